"""The step's explicit plan: a loss declares the pairs it scores, the pipeline tokenizes exactly those ahead.

Every test counts the tokenizer calls made while the loss runs (none: the features come from the plan) and
records the features each forward pass receives (exactly the plan's chunks, in order), for pointwise,
in-batch (MNRL), listwise with mini-batches (plain and GradCache) and CachedMNRL losses; a trainer run with
all of them never tokenizes in the training thread. The gathered MNRL case runs in
``test_loss_distributed.py`` (2 gloo processes).
"""

from __future__ import annotations

import copy
import math
import random
import threading

import pytest
import torch

import raycross.losses as L
from raycross import CrossEncoder
from raycross.losses import ScorePlan, is_planned
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
from raycross.training.batches import Batch, BatchStream, batch_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ANCHORS = ["a man plays with a dog", "the woman is eating food", "two children run outside", "a cat sits",
           "what is python"]
POSITIVES = ["a man is playing", "a woman eats", "children are running", "the cat is sitting", "a language"]
NEGATIVES = ["the car is red", "a city street at night", "water is blue", "an old house", "a snake"]
QUERIES = ["a man plays", "what is python", "the dog runs"]
DOCS = [["a man is playing", "the city", "a dog", "the woman is eating", "old house"],
        ["python is a program", "a function", "red car"],
        ["the dog is running outside", "cat", "a boy", "blue water"]]
LIST_LABELS = [[1.0, 0.0, 0.3, 0.0, 0.1], [2.0, 1.0, 0.0], [1.0, 0.0, 0.2, 0.0]]


WORDS = "the man woman dog cat water food house car street city play run walk".split()


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"query": " ".join(rng.choices(WORDS, k=3)), "passage": (p := " ".join(rng.choices(WORDS, k=4))),
             "label": int("dog" in p.split())} for _ in range(n)]


class CountingTokenizer:
    """A tokenizer that records the thread of every call; its deep copies record into the same list."""

    def __init__(self, inner, calls: list[str]) -> None:
        self.inner = inner
        self.calls = calls

    def __call__(self, *args, **kwargs):
        self.calls.append(threading.current_thread().name)
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __deepcopy__(self, memo):
        return CountingTokenizer(copy.deepcopy(self.inner, memo), self.calls)


@pytest.fixture
def model(tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    model.tokenizer = CountingTokenizer(model.tokenizer, [])
    return model


class ForwardRecorder:
    """Records the features mapping of every forward pass of `model`."""

    def __init__(self, model) -> None:
        self.seen: list = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.seen.append(args[0]))

    def close(self) -> None:
        self.handle.remove()


def run_planned(model, loss, plan: ScorePlan, labels) -> tuple[float, list]:
    """loss(plan, labels) + backward; returns the value and the features of each forward pass, checking
    that the tokenizer was not called on the way."""
    calls, here = model.tokenizer.calls, threading.current_thread().name  # (a pipeline thread may add its own)
    before = calls.count(here)
    recorder = ForwardRecorder(model)
    try:
        value = loss(plan, labels)
        value.backward()
    finally:
        recorder.close()
    assert calls.count(here) == before, "the loss tokenized again although its plan was tokenized"
    return value.item(), recorder.seen


def generator(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CASES = {
    "pointwise BCE": (lambda m: L.BinaryCrossEntropyLoss(m), [ANCHORS, POSITIVES], [1.0, 0.0, 1.0, 0.0, 1.0]),
    "MarginMSE": (lambda m: L.MarginMSELoss(m), [ANCHORS, POSITIVES, NEGATIVES], [1.0, 0.5, 2.0, 0.0, 1.0]),
    "MNRL sampled": (lambda m: L.MultipleNegativesRankingLoss(m, num_negatives=2), [ANCHORS, POSITIVES, NEGATIVES],
                     None),
    "CachedMNRL": (lambda m: L.CachedMultipleNegativesRankingLoss(m, num_negatives=3, mini_batch_size=4),
                   [ANCHORS, POSITIVES, NEGATIVES], None),
    "listwise GradCache": (lambda m: L.ListNetLoss(m, mini_batch_size=4), [QUERIES, DOCS], LIST_LABELS),
    "listwise chunked": (lambda m: L.LambdaLoss(m, mini_batch_size=5, gradient_cache=False), [QUERIES, DOCS],
                         LIST_LABELS),
}


def expected_pairs(loss, inputs) -> list[tuple[str, str]]:
    """The pairs each loss scores, written out from its definition."""
    if isinstance(loss, L.MultipleNegativesRankingLoss):
        return loss.build_pairs(inputs, generator())[0]  # same generator state as the plan's
    if isinstance(loss, L.ListwiseLoss):
        return [(q, d) for q, docs in zip(*inputs) for d in docs]
    return [(q, d) for column in inputs[1:] for q, d in zip(inputs[0], column)]


@pytest.mark.parametrize("case", list(CASES))
def test_the_loss_scores_exactly_its_planned_and_pretokenized_chunks(model, case):
    make, inputs, labels = CASES[case]
    loss = make(model)
    assert is_planned(loss)
    model.train()
    plan = loss.plan(inputs, generator())
    assert plan.pairs == expected_pairs(loss, inputs)
    n = len(plan.pairs)
    size = getattr(loss, "mini_batch_size", None) or n
    assert plan.chunks == [plan.pairs[b:b + size] for b in range(0, n, size)]
    plan.tokenize(model.preprocess)
    assert len(model.tokenizer.calls) == len(plan.chunks) and plan.num_tokens > 0

    _, seen = run_planned(model, loss, plan, labels)
    # every forward pass got one of the plan's chunks, in order (GradCache: a pass without graph, then the replay)
    passes = 2 if getattr(loss, "uses_gradient_cache", False) and len(plan.chunks) > 1 else 1
    assert [id(f) for f in seen] == [id(f) for f in plan.features] * passes


def test_a_plan_gives_the_loss_of_the_texts(model):
    """Called with texts (sentence-transformers style) or with its tokenized plan: the same loss and gradients."""
    model.eval()  # no dropout: both calls see the same forward
    for make, inputs, labels in [CASES["pointwise BCE"], CASES["listwise GradCache"],
                                 (lambda m: L.CachedMultipleNegativesRankingLoss(m, num_negatives=None,
                                                                                 mini_batch_size=4),
                                  [ANCHORS, POSITIVES, NEGATIVES], None)]:
        loss = make(model)
        model.zero_grad(set_to_none=True)
        direct = loss(inputs, labels)
        direct.backward()
        direct_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        value, _ = run_planned(model, loss, loss.plan(inputs).tokenize(model.preprocess), labels)
        assert value == pytest.approx(direct.item(), abs=1e-6)
        for name, grad in direct_grads.items():
            assert torch.allclose(dict(model.named_parameters())[name].grad, grad, atol=1e-6, rtol=0), name


def test_batch_stream_plans_and_tokenizes_in_its_thread(model):
    """Moved from the trainer tests: the background thread tokenizes exactly what the losses score."""
    pointwise = make_rows(12, seed=11)
    listwise = [{"query": r["query"], "docs": [r["passage"], "dog run", "cat"], "labels": [r["label"], 1, 0]}
                for r in make_rows(12, seed=12)]
    losses = {"pairs": L.BinaryCrossEntropyLoss(model), "lists": L.ListNetLoss(model, mini_batch_size=5)}

    def make_batch(step: int) -> Batch:
        name = "pairs" if step % 2 == 0 else "lists"
        rows = (pointwise if name == "pairs" else listwise)[step * 2: step * 2 + 4]
        columns = ["query", "passage"] if name == "pairs" else ["query", "docs"]
        labels = torch.tensor([r["label"] for r in rows]) if name == "pairs" else [r["labels"] for r in rows]
        return Batch(name, [[r[c] for r in rows] for c in columns], labels, len(rows), seed=step)

    model.train()
    values, chunks = [], 0
    for batch in BatchStream(range(4), make_batch, model, losses, prefetch=2):
        assert batch.plan is not None and batch.plan.features is not None  # tokenized ahead
        chunks += len(batch.plan.chunks)
        torch.manual_seed(0)
        value, seen = run_planned(model, losses[batch.dataset], batch.loss_inputs, batch.labels)
        assert [id(f) for f in seen] == [id(f) for f in batch.plan.features] * (2 if batch.dataset == "lists" else 1)
        values.append(value)
    # the thread made every tokenizer call: one per chunk, none in the training thread
    assert model.tokenizer.calls == ["raycross-batches"] * chunks and chunks == 2 * 1 + 2 * math.ceil(12 / 5)
    # and the losses are the ones computed from the texts without any prefetching
    for step, value in enumerate(values):
        batch = make_batch(step)
        torch.manual_seed(0)
        assert value == pytest.approx(losses[batch.dataset](batch.inputs, batch.labels).item(), abs=1e-6)


def test_sampled_negatives_depend_on_the_batch_seed_only(model):
    loss = L.MultipleNegativesRankingLoss(model, num_negatives=2)
    inputs = [ANCHORS, POSITIVES, NEGATIVES]
    seed = batch_seed(7, 1, 3, 0)
    first = loss.plan(inputs, torch.Generator().manual_seed(seed)).pairs
    torch.rand(10)  # the global random stream (dropout) does not matter
    assert loss.plan(inputs, torch.Generator().manual_seed(seed)).pairs == first
    assert loss.plan(inputs, torch.Generator().manual_seed(batch_seed(7, 1, 4, 0))).pairs != first


def test_a_custom_forward_gets_the_texts():
    class Texts(L.BinaryCrossEntropyLoss):
        def forward(self, inputs, labels=None):  # a user's override, written for texts
            return super().forward([list(c) for c in inputs], labels)

    assert not is_planned(Texts.__new__(Texts)) and not is_planned(torch.nn.MSELoss())


def test_training_never_tokenizes_in_the_training_thread(model, tmp_path):
    rows = make_rows(24, seed=3)
    triplets = [{"anchor": r["query"], "positive": r["passage"], "negative": rows[(i + 5) % 24]["passage"]}
                for i, r in enumerate(rows)]
    lists = [{"query": r["query"], "docs": [r["passage"], "dog run", "cat"], "labels": [r["label"], 1, 0]}
             for r in rows]
    train = {"pairs": rows, "mnrl": triplets, "cached": triplets, "lists": lists}
    losses = {"pairs": L.BinaryCrossEntropyLoss(model), "mnrl": L.MultipleNegativesRankingLoss(model, num_negatives=2),
              "cached": L.CachedMultipleNegativesRankingLoss(model, num_negatives=2, mini_batch_size=5),
              "lists": L.ListNetLoss(model, mini_batch_size=7)}
    args = CrossEncoderTrainingArguments(str(tmp_path), max_steps=8, per_device_train_batch_size=6, logging_steps=4,
                                         save_strategy="no", disable_tqdm=True, seed=7,
                                         multi_dataset_batch_sampler="round_robin")
    calls = model.tokenizer.calls
    result = CrossEncoderTrainer(model, args, train_dataset=train, loss=losses).train()
    assert result.global_step == 8
    assert calls and set(calls) == {"raycross-batches"}  # all tokenization happened ahead, in the pipeline
    assert result.metrics["train_tokens_per_second"] > 0


# ---------------------------------------------------------------------- the model's parallel wrapper
@pytest.fixture
def one_process_group(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_training_passes_go_through_the_wrapper_and_inference_skips_it(model, one_process_group):
    model.train()
    features = model.preprocess(list(zip(ANCHORS, POSITIVES)))
    model.eval()
    bare = model(features).detach()  # padding-free forward of the bare transformer
    model.wrap_for_training("ddp")
    assert model.parallel_kind == "ddp" and model.hf_model is model.model
    ddp = model._parallel.module
    calls = []
    ddp.register_forward_pre_hook(lambda module, args, kwargs: calls.append(True), with_kwargs=True)

    torch.testing.assert_close(model(features), bare)  # with gradients: through DDP, same (unpadded) logits
    assert len(calls) == 1
    with torch.no_grad():
        model(features)
    with model.unwrapped():
        model(features)
    model.predict([("q", "d")])
    assert len(calls) == 1  # inference and unwrapped() use the bare transformer

    with model.gradient_sync(False):
        assert not ddp.require_backward_grad_sync
        with model.gradient_sync(True):  # an enclosing skip wins (GradCache's replay inside accumulation)
            assert not ddp.require_backward_grad_sync
    assert ddp.require_backward_grad_sync
    with pytest.raises(ValueError, match="already wrapped"):
        model.wrap_for_training("ddp")
    model.unwrap()
    assert model.parallel_kind is None and model.hf_model is model.model


def test_unknown_parallel_kind_is_named(model):
    with pytest.raises(ValueError, match=r"kind: expected one of \['ddp', 'fsdp'\], found 'tp'"):
        model.wrap_for_training("tp")
