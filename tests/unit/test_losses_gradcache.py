"""GradCache on a real (tiny) transformer: CachedMNRL == MNRL with dropout, listwise caching bounds memory,
bf16 autocast keeps fp32 losses and finite gradients."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

import raycross.losses as L
from raycross import CrossEncoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TOL = 1e-5
ANCHORS = ["a man plays with a dog", "the woman is eating food", "two children run outside", "a cat sits"]
POSITIVES = ["a man is playing", "a woman eats", "children are running", "the cat is sitting"]
NEGATIVES = ["the car is red", "a city street at night", "water is blue", "an old house"]
QUERIES = ["a man plays", "what is python", "the dog runs"]
DOCS = [
    ["a man is playing", "the city", "a dog", "the woman is eating", "old house"],
    ["python is a program", "a function", "red car"],
    ["the dog is running outside", "cat", "a boy", "blue water"],
]
LABELS = [[1.0, 0.0, 0.3, 0.0, 0.1], [2.0, 1.0, 0.0], [1.0, 0.0, 0.2, 0.0]]


@pytest.fixture
def model(tiny_model_path):
    return CrossEncoder(str(tiny_model_path), device="cpu")


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run(loss, inputs, labels=None, seed=0):
    loss.model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    value = loss(inputs, labels)
    value.backward()
    return value.item(), grads(loss.model)


def assert_same(a, b, tol=TOL):
    (va, ga), (vb, gb) = a, b
    assert va == pytest.approx(vb, abs=tol)
    assert ga.keys() == gb.keys() and len(ga) > 10
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=tol, rtol=0), (name, (ga[name] - gb[name]).abs().max())


def test_dropout_is_active_in_train_mode(model):
    model.train()
    features = model.preprocess(list(zip(ANCHORS, POSITIVES)))
    assert not torch.allclose(model(features), model(features))


@pytest.mark.parametrize("columns", [2, 3])
def test_cached_mnrl_equals_mnrl_without_dropout(model, columns):
    model.eval()
    inputs = [ANCHORS, POSITIVES, NEGATIVES][:columns]
    plain = run(L.MultipleNegativesRankingLoss(model, num_negatives=None), inputs)
    cached = run(L.CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=3), inputs)
    assert_same(plain, cached)


@pytest.mark.parametrize("num_negatives", [None, 2])
def test_cached_mnrl_equals_mnrl_with_dropout(model, num_negatives):
    """One mini-batch: the cached forward, its RNG replay and MNRL's single forward draw identical dropout."""
    model.train()
    inputs = [ANCHORS, POSITIVES, NEGATIVES]
    plain = run(L.MultipleNegativesRankingLoss(model, num_negatives=num_negatives), inputs, seed=7)
    cached = run(L.CachedMultipleNegativesRankingLoss(model, num_negatives=num_negatives, mini_batch_size=1000),
                 inputs, seed=7)
    assert_same(plain, cached)


def test_cached_mnrl_replays_dropout_per_mini_batch(model):
    """Several mini-batches in train mode: the gradient is the one of an ordinary pass over the same mini-batches
    under the same RNG stream (the replay reproduces every mini-batch's dropout masks)."""
    model.train()
    inputs = [ANCHORS, POSITIVES, NEGATIVES]
    loss = L.CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=5)
    cached = run(loss, inputs, seed=3)

    pairs, batch_size = loss.build_pairs(inputs)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    logits = torch.cat([model(model.preprocess(pairs[b:b + 5])).view(-1) for b in range(0, len(pairs), 5)])
    scores = 10.0 * torch.sigmoid(logits.view(-1, batch_size).T)  # rows x (positive, in-batch, hard negatives)
    reference = -(scores[:, 0] - torch.logsumexp(scores, dim=1)).mean()
    reference.backward()
    assert_same(cached, (reference.item(), grads(model)))


def test_cached_loss_scales_with_the_incoming_gradient_and_skips_hooks_without_grad(model):
    model.eval()
    inputs = [ANCHORS, POSITIVES]
    loss = L.CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=3)
    value, full = run(loss, inputs)
    model.zero_grad(set_to_none=True)
    (loss(inputs) * 0.25).backward()  # e.g. gradient accumulation over 4 steps
    for name, g in grads(model).items():
        assert torch.allclose(g, full[name] * 0.25, atol=1e-6, rtol=0)
    with torch.no_grad():
        evaluated = loss(inputs)
    assert not evaluated.requires_grad and evaluated.item() == pytest.approx(value, abs=TOL)


LISTWISE = ["ListNetLoss", "ListMLELoss", "PListMLELoss", "LambdaLoss", "RankNetLoss", "ADRMSELoss"]


@pytest.mark.parametrize("name", LISTWISE)
def test_listwise_gradient_cache_matches_plain_chunked_pass_with_dropout(model, name):
    model.train()
    inputs = [QUERIES, DOCS]
    plain = run(getattr(L, name)(model, mini_batch_size=4, gradient_cache=False), inputs, LABELS, seed=11)
    cached_loss = getattr(L, name)(model, mini_batch_size=4)
    assert cached_loss.uses_gradient_cache
    cached = run(cached_loss, inputs, LABELS, seed=11)
    assert_same(plain, cached)


class SavedActivations:
    """Tracks the bytes of tensors saved for backward that are alive, and their peak."""

    def __init__(self) -> None:
        self.alive = 0
        self.peak = 0

    def pack(self, tensor):
        tracker, size = self, tensor.numel() * tensor.element_size()

        class Held:
            def __init__(self) -> None:
                self.tensor = tensor
                tracker.alive += size
                tracker.peak = max(tracker.peak, tracker.alive)

            def __del__(self) -> None:
                tracker.alive -= size

        return Held()

    @staticmethod
    def unpack(held):
        return held.tensor


def peak_saved_bytes(loss, inputs, labels) -> int:
    tracker = SavedActivations()
    with saved_tensors_hooks(tracker.pack, tracker.unpack):
        loss(inputs, labels).backward()
    return tracker.peak


def test_listwise_gradient_cache_bounds_activation_memory(model):
    """With 12 pairs in mini-batches of 2, at most one mini-batch of activations is alive at a time."""
    model.eval()
    inputs = [QUERIES, DOCS]
    whole = peak_saved_bytes(L.LambdaLoss(model), inputs, LABELS)
    chunked_only = peak_saved_bytes(L.LambdaLoss(model, mini_batch_size=2, gradient_cache=False), inputs, LABELS)
    cached = peak_saved_bytes(L.LambdaLoss(model, mini_batch_size=2), inputs, LABELS)
    assert chunked_only > 0.5 * whole  # chunking alone keeps every chunk's graph
    assert cached < 0.3 * whole


@pytest.mark.parametrize("name", LISTWISE)
@pytest.mark.parametrize("mini_batch_size", [None, 4])
def test_listwise_bf16_autocast_gives_fp32_loss_and_finite_gradients(model, name, mini_batch_size):
    model.train()
    seen = []
    handle = model.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    loss = getattr(L, name)(model, mini_batch_size=mini_batch_size)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss([QUERIES, DOCS], LABELS)
        value.backward()
    finally:
        handle.remove()
    assert torch.bfloat16 in seen  # the model really ran in bf16 (also in the GradCache replay)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    g = grads(model)
    assert g and all(torch.isfinite(t).all() for t in g.values())
    assert sum(t.abs().sum() for t in g.values()) > 0


def test_cached_mnrl_bf16_autocast_replays_in_bf16_and_keeps_fp32_loss(model):
    model.train()
    seen = []
    handle = model.register_forward_hook(lambda module, args, out: seen.append((torch.is_grad_enabled(), out.dtype)))
    loss = L.CachedMultipleNegativesRankingLoss(model, num_negatives=None, mini_batch_size=5)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss([ANCHORS, POSITIVES, NEGATIVES])
        value.backward()  # outside autocast, as trainers do: the replay restores it
    finally:
        handle.remove()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    replayed = [dtype for with_grad, dtype in seen if with_grad]
    assert replayed and all(dtype == torch.bfloat16 for dtype in replayed)
    assert all(torch.isfinite(g).all() for g in grads(model).values())
