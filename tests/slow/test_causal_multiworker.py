"""A causal-LM reranker trained by 2 Ray Train workers (gloo, CPU): pointwise, listwise and GradCache losses in
one multi-dataset run; DDP keeps the workers' weights identical; the export loads in raycross and
sentence-transformers 6.2 with the same scores.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.losses import BinaryCrossEntropyLoss, CachedMultipleNegativesRankingLoss, ListNetLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
from tests.conftest import tiny_rerank_task

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def ship_this_module_by_value(ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class WeightDigest(TrainerCallback):
    """Each worker writes a digest of its weights when training ends (DDP must keep them identical)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def on_train_end(self, args, state, control, model=None, **kwargs):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        digest = hashlib.sha256()
        for _, tensor in sorted(model.hf_model.state_dict().items()):
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        (Path(self.log_dir) / f"rank{rank}.txt").write_text(digest.hexdigest())


def test_two_workers_train_a_causal_reranker_with_three_losses(tmp_path, tiny_causal_path):
    train, samples = tiny_rerank_task(seed=5, n_train=256, n_queries=20)
    pairs = {k: v[:128] for k, v in train.items()}
    lists = {"query": train["a"][0:128:2],
             "docs": [[train["b"][i], train["b"][i + 1]] for i in range(0, 128, 2)],
             "labels": [[1.0, 0.0] for _ in range(0, 128, 2)]}
    inbatch = {"query": train["a"][128::2], "positive": train["b"][128::2]}
    model = CrossEncoder(str(tiny_causal_path), device="cpu")
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev")
    before = evaluator(model)["dev_ndcg@10"]
    losses = {"pairs": BinaryCrossEntropyLoss(model), "lists": ListNetLoss(model, mini_batch_size=8),
              "inbatch": CachedMultipleNegativesRankingLoss(model, num_negatives=2, mini_batch_size=4)}
    (tmp_path / "digests").mkdir()
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=3e-3,
        logging_steps=4, eval_strategy="epoch", save_strategy="no", seed=5, disable_tqdm=True, warmup_ratio=0.0,
        multi_dataset_batch_sampler="round_robin", num_workers=2, resources_per_worker={"CPU": 0.5},
        shard_eval=True,
    )
    result = CrossEncoderTrainer(model, args, train_dataset={"pairs": pairs, "lists": lists, "inbatch": inbatch},
                                 loss=losses, evaluator=evaluator,
                                 callbacks=[WeightDigest(str(tmp_path / "digests"))]).train()

    # round robin: each dataset contributes min(batches) per epoch; 64 rows / (2 workers x 8) = 4 batches
    assert result.global_step == 2 * 3 * 4
    assert all(math.isfinite(e["loss"]) for e in result.log_history if "loss" in e)
    digests = {p.read_text() for p in (tmp_path / "digests").iterdir()}
    assert len(list((tmp_path / "digests").iterdir())) == 2 and len(digests) == 1  # DDP kept the workers in sync

    exported = tmp_path / "out"
    assert (exported / "modules.json").is_file()
    reloaded = CrossEncoder(str(exported), device="cpu")
    from sentence_transformers import CrossEncoder as STCrossEncoder

    theirs = STCrossEncoder(str(exported), device="cpu")
    probe = [(s["query"], d) for s in samples[:5] for d in s["positive"] + s["negative"]]
    np.testing.assert_allclose(reloaded.predict(probe), model.predict(probe), atol=1e-6)
    np.testing.assert_allclose(theirs.predict(probe), reloaded.predict(probe), atol=1e-5)
    last = [e["eval_dev_ndcg@10"] for e in result.log_history if "eval_dev_ndcg@10" in e][-1]
    assert last == pytest.approx(evaluator(reloaded)["dev_ndcg@10"], abs=1e-6)
    assert last > before + 0.05, (before, last)
