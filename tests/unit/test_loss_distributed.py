"""MultipleNegativesRankingLoss(gather_across_devices=True) in 2 gloo processes (torch.multiprocessing, no Ray)
equals a single-process reference over the concatenated batch, row by row, in loss and gradients; called with
texts, and through the training pipeline (BatchStream), whose plan holds the gathered pairs, tokenized
before the loss runs (the loss itself tokenizes nothing).

The workers use a small pure-torch pair scorer (word embeddings + MLP) with the CrossEncoder interface, so the
spawned processes start in about a second instead of importing transformers; the gather is model-agnostic.
"""

from __future__ import annotations

import os
import threading
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

ANCHORS = ["a man plays with a dog", "the woman is eating food", "two children run outside", "what is python",
           "a cat sits"]
POSITIVES = ["a man is playing", "a woman eats", "children are running", "python is a program", "the cat is sitting"]
NEGATIVES = ["the car is red", "a city street at night", "water is blue", "an old house", "green water"]
SPLITS = [(0, 3), (3, 5)]  # unequal local batches: rank 0 holds rows 0-2, rank 1 rows 3-4


class PairScorer(nn.Module):
    """A tiny cross-encoder stand-in: hashed words of both texts -> embeddings -> MLP -> one logit."""

    num_labels = 1
    device = torch.device("cpu")
    tokenizer = None  # preprocess needs none; the pipeline hands each thread its own copy


    def __init__(self, seed: int = 0, buckets: int = 97, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.buckets = buckets
        self.embed = nn.Embedding(2 * buckets, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.preprocess_calls: list[str] = []

    def preprocess(self, pairs, tokenizer=None):
        self.preprocess_calls.append(threading.current_thread().name)
        ids = [[sum(map(ord, w)) % self.buckets + side * self.buckets for side, text in enumerate(p)
                for w in text.split()] for p in pairs]
        width = max(len(x) for x in ids)
        return {"ids": torch.tensor([x + [0] * (width - len(x)) for x in ids]),
                "mask": torch.tensor([[1.0] * len(x) + [0.0] * (width - len(x)) for x in ids])}

    def forward(self, features):
        mask = features["mask"][:, :, None]
        pooled = (self.embed(features["ids"]) * mask).sum(1) / mask.sum(1)
        return self.mlp(pooled)


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        from raycross.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss

        model = PairScorer()
        begin, end = SPLITS[rank]
        local = [col[begin:end] for col in (ANCHORS, POSITIVES, NEGATIVES)]
        results = {}
        for name, loss in [
            ("plain", MultipleNegativesRankingLoss(model, num_negatives=None, gather_across_devices=True)),
            ("cached", CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=4,
                                                          gather_across_devices=True)),
        ]:
            model.zero_grad(set_to_none=True)
            value = loss(local)
            value.backward()
            results[name] = {
                "loss": value.item(),
                "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                "num_pairs": len(loss.build_pairs(local)[0]),
            }
        results["streamed"] = _streamed(model, local, rank)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # both ranks are done before either goes
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    # no destroy_process_group(): gloo's teardown can hang in one rank once the other has exited
    os._exit(0)


def _streamed(model, local, rank: int) -> dict:
    """One batch through the training pipeline: planned (with the gather) and tokenized before the loss runs."""
    from raycross.losses import MultipleNegativesRankingLoss
    from raycross.training.batches import Batch, BatchStream

    loss = MultipleNegativesRankingLoss(model, num_negatives=None, gather_across_devices=True)
    model.preprocess_calls.clear()
    stream = BatchStream(range(1), lambda step: Batch("d", local, None, len(local[0]), seed=step), model, {"d": loss})
    (batch,) = list(stream)
    plan = batch.plan
    planned_in = list(model.preprocess_calls)
    model.preprocess_calls.clear()
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.zero_grad(set_to_none=True)
    value = loss(batch.loss_inputs)
    value.backward()
    hook.remove()
    local_texts = {t for column in local[1:] for t in column}
    return {
        "loss": value.item(),
        "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
        "num_pairs": len(plan.pairs),
        # planned in the training thread (the gather is a collective), tokenized once, nothing in the loss
        "planned_in": planned_in, "loss_tokenized": list(model.preprocess_calls),
        "scored_plan": [id(f) for f in seen] == [id(f) for f in plan.features],
        "other_worker_texts": len({d for _, d in plan.pairs} - local_texts),
    }


def reference_rows(model, rows: range) -> torch.Tensor:
    """Mean over `rows` of the MNRL loss over the whole concatenated batch (every other row's texts as negatives)."""
    losses = []
    for i in rows:
        texts = [POSITIVES[i]]
        texts += [col[j] for col in (POSITIVES, NEGATIVES) for j in range(len(ANCHORS)) if j != i]
        texts += [NEGATIVES[i]]
        logits = model(model.preprocess([(ANCHORS[i], t) for t in texts])).view(-1)
        scores = 10.0 * torch.sigmoid(logits)
        losses.append(-(scores[0] - torch.logsumexp(scores, dim=0)))
    return torch.stack(losses).mean()


def test_gathered_mnrl_equals_single_process_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    init_file = tmp_path / "pg_init"
    mp.spawn(_worker, args=(2, str(init_file), str(tmp_path)), nprocs=2, join=True)

    model = PairScorer()
    n = len(ANCHORS)
    for rank, (begin, end) in enumerate(SPLITS):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        model.zero_grad(set_to_none=True)
        reference = reference_rows(model, range(begin, end))
        reference.backward()
        ref_grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        streamed = results["streamed"]
        assert streamed["planned_in"] == ["MainThread"] and streamed["loss_tokenized"] == []
        assert streamed["scored_plan"] and streamed["other_worker_texts"] == 2 * (n - (end - begin))
        for kind in ("plain", "cached", "streamed"):
            got = results[kind]
            # every local row is scored against all 2 * (n - 1) texts of the other rows of both workers
            assert got["num_pairs"] == (end - begin) * (1 + 2 * (n - 1) + 1)
            assert abs(got["loss"] - reference.item()) < 1e-5, (rank, kind, got["loss"], reference.item())
            assert got["grads"].keys() == ref_grads.keys()
            for name, grad in ref_grads.items():
                assert torch.allclose(got["grads"][name], grad, atol=1e-5, rtol=0), (rank, kind, name)
