"""predict / rank with a pool of Ray actors (start_multi_process_pool(..., backend="ray")): same scores
as scoring in this process."""

from __future__ import annotations

import numpy as np
import pytest

from raycross import CrossEncoder

PAIRS = [("a man plays with a dog", "the dog runs"), ("a cat", "a red car"), ("what is python", "python is code"),
         ("water", "the child drinks water")] * 3


def test_ray_actor_pool_scores_like_local(ray_session, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    expected = model.predict(PAIRS)
    pool = model.start_multi_process_pool(["cpu", "cpu"], backend="ray")
    try:
        np.testing.assert_allclose(model.predict(PAIRS, pool=pool), expected, atol=1e-5)
        ranked = model.rank("a man", [d for _, d in PAIRS[:4]], pool=pool)
        assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in model.rank("a man", [d for _, d in PAIRS[:4]])]
        with pytest.raises(ValueError, match="Ray pool scores with the model's own activation_fn"):
            model.predict(PAIRS, pool=pool, apply_softmax=True)
    finally:
        model.stop_multi_process_pool(pool)
