"""A sentence-transformers Transformer(feature-extraction) + Pooling(lasttoken) + Dense(scores) LLM reranker, built
with sentence-transformers 6.2's classes, trained by 2 Ray Train workers (gloo, CPU) with a pointwise and a
listwise loss; DDP keeps the workers' weights (head included) identical, and the export keeps the module chain
and scores the same in raycross and sentence-transformers 6.2.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from torch import nn

from raycross import CrossEncoder
from raycross.losses import BinaryCrossEntropyLoss, ListNetLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
from tests.conftest import tiny_rerank_task
from tests.slow import test_causal_multiworker
from tests.slow.test_causal_multiworker import WeightDigest
from tests.unit.test_st_module_chains import build_chain

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def ship_test_modules_by_value(ray_session):
    import ray.cloudpickle

    modules = [sys.modules[__name__], test_causal_multiworker]
    for module in modules:
        ray.cloudpickle.register_pickle_by_value(module)
    yield
    for module in modules:
        ray.cloudpickle.unregister_pickle_by_value(module)


def test_two_workers_train_a_pooled_llm_chain(tmp_path, tiny_causal_path):
    chain = build_chain("qwen3_lasttoken", tiny_causal_path, tmp_path / "chain")
    train, samples = tiny_rerank_task(seed=6, n_train=128, n_queries=10)
    lists = {"query": train["a"][0::2], "docs": [[train["b"][i], train["b"][i + 1]] for i in range(0, 128, 2)],
             "labels": [[1.0, 0.0] for _ in range(0, 128, 2)]}
    model = CrossEncoder(str(chain), device="cpu")
    losses = {"pairs": BinaryCrossEntropyLoss(model), "lists": ListNetLoss(model, mini_batch_size=8)}
    (tmp_path / "digests").mkdir()
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=8, learning_rate=3e-3,
        logging_steps=2, save_strategy="no", seed=6, disable_tqdm=True, warmup_ratio=0.0,
        multi_dataset_batch_sampler="round_robin", num_workers=2, resources_per_worker={"CPU": 0.5},
    )
    result = CrossEncoderTrainer(model, args, train_dataset={"pairs": train, "lists": lists}, loss=losses,
                                 callbacks=[WeightDigest(str(tmp_path / "digests"))]).train()

    # round robin: min(128 pairs, 64 lists) / (2 workers x 8) = 4 batches per dataset
    assert result.global_step == 2 * 4
    assert all(math.isfinite(e["loss"]) for e in result.log_history if "loss" in e)
    digests = [p.read_text() for p in (tmp_path / "digests").iterdir()]
    assert len(digests) == 2 and len(set(digests)) == 1  # DDP kept the workers (and the Dense head) in sync

    exported = tmp_path / "out"
    saved = [m["type"].rsplit(".", 1)[-1] for m in json.loads((exported / "modules.json").read_text())]
    assert saved == ["Transformer", "Pooling", "Dense"]
    reloaded = CrossEncoder(str(exported), device="cpu")
    untrained = CrossEncoder(str(chain), device="cpu")
    from sentence_transformers import CrossEncoder as STCrossEncoder

    theirs = STCrossEncoder(str(exported), device="cpu")
    probe = [(s["query"], d) for s in samples for d in s["positive"] + s["negative"]]

    def raw(m, **kwargs):
        return np.asarray(m.predict(probe, activation_fn=nn.Identity(), **kwargs))

    assert not np.allclose(raw(reloaded), raw(untrained), atol=1e-3)  # the workers' training reached the export
    np.testing.assert_allclose(raw(reloaded), raw(model), atol=1e-6)
    np.testing.assert_allclose(raw(theirs), raw(reloaded), atol=1e-5)
    np.testing.assert_allclose(raw(theirs, prompt_name="judge"), raw(reloaded, prompt_name="judge"), atol=1e-5)
