"""A few optimisation steps of every loss on a tiny transformer reduce that loss on a fixed batch."""

from __future__ import annotations

import pytest
import torch

import raycross.losses as L
from raycross import CrossEncoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


Q = ["a man plays with a dog", "the woman is eating food", "two children run outside", "what is python"]
POS = ["a man is playing", "a woman eats", "children are running", "python is a program"]
NEG = ["the car is red", "a city street at night", "water is blue", "an old house"]
NEG2 = ["a cat sits", "the boy is young", "green house", "the city"]
DOCS = [[POS[0], NEG[0], NEG2[0]], [POS[1], NEG[1]], [POS[2], NEG[2], NEG2[2], NEG[3]]]
LIST_LABELS = [[1.0, 0.0, 0.5], [1.0, 0.0], [2.0, 0.0, 1.0, 0.0]]

CASES = {
    "BinaryCrossEntropyLoss": (lambda m: L.BinaryCrossEntropyLoss(m), [Q, POS], torch.tensor([1.0, 1.0, 0.0, 1.0])),
    "MSELoss": (lambda m: L.MSELoss(m), [Q, POS], torch.tensor([2.0, -1.0, 0.5, 3.0])),
    "MarginMSELoss": (lambda m: L.MarginMSELoss(m), [Q, POS, NEG, NEG2], torch.tensor([[3.0, 1.0, 0.0]] * 4)),
    "MultipleNegativesRankingLoss": (
        lambda m: L.MultipleNegativesRankingLoss(m, num_negatives=None), [Q, POS, NEG], None),
    "CachedMultipleNegativesRankingLoss": (
        lambda m: L.CachedMultipleNegativesRankingLoss(m, num_negatives=None, mini_batch_size=6), [Q, POS, NEG], None),
    "ListNetLoss": (lambda m: L.ListNetLoss(m, mini_batch_size=4), [Q[:3], DOCS], LIST_LABELS),
    "ListMLELoss": (lambda m: L.ListMLELoss(m, respect_input_order=False), [Q[:3], DOCS], LIST_LABELS),
    "PListMLELoss": (
        lambda m: L.PListMLELoss(m, respect_input_order=False, mini_batch_size=4), [Q[:3], DOCS], LIST_LABELS),
    "LambdaLoss": (lambda m: L.LambdaLoss(m, mini_batch_size=4), [Q[:3], DOCS], LIST_LABELS),
    "RankNetLoss": (lambda m: L.RankNetLoss(m), [Q[:3], DOCS], LIST_LABELS),
    "ADRMSELoss": (lambda m: L.ADRMSELoss(m, mini_batch_size=4), [Q[:3], DOCS], LIST_LABELS),
}


def optimise(loss, inputs, labels, steps: int = 3, lr: float = 1e-2) -> tuple[float, float]:
    model = loss.model
    model.eval()  # no dropout: the loss of the fixed batch is deterministic
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        before = loss(inputs, labels).item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss(inputs, labels).backward()
        optimizer.step()
    with torch.no_grad():
        after = loss(inputs, labels).item()
    return before, after


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimisation_steps_reduce_the_loss(name, tiny_model_path):
    build, inputs, labels = CASES[name]
    torch.manual_seed(0)
    loss = build(CrossEncoder(str(tiny_model_path), device="cpu"))
    before, after = optimise(loss, inputs, labels)
    assert after < 0.98 * before, (before, after)


def test_cross_entropy_optimisation_reduces_the_loss(tiny_model_path_3labels):
    loss = L.CrossEntropyLoss(CrossEncoder(str(tiny_model_path_3labels), device="cpu"))
    before, after = optimise(loss, [Q, POS], torch.tensor([2, 1, 2, 2]))
    assert after < 0.98 * before, (before, after)
