"""Legacy ``CrossEncoder.fit(train_dataloader, ...)`` with InputExample, running on the trainer."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from raycross import CrossEncoder, InputExample
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.fit import fit

WORDS = "the man woman dog cat water food house car street city play run walk".split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def examples(n: int, seed: int) -> list[InputExample]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        passage = rng.choices(WORDS, k=4)
        out.append(InputExample(texts=[" ".join(rng.choices(WORDS, k=3)), " ".join(passage)],
                                label=float("dog" in passage)))
    return out


def test_fit_with_evaluator_calls_back_and_keeps_the_best_model(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    rng = random.Random(3)
    evaluator = CrossEncoderRerankingEvaluator(
        [{"query": "a", "positive": [f"{rng.choice(WORDS)} dog"], "negative": ["cat water", "man run"]}
         for _ in range(8)], name="dev")
    scores: list[tuple[float, float, int]] = []
    model.fit(
        DataLoader(examples(24, seed=1), batch_size=8, shuffle=True), evaluator=evaluator, epochs=2,
        warmup_steps=1, optimizer_params={"lr": 2e-3}, evaluation_steps=2, output_path=str(tmp_path / "best"),
        callback=lambda score, epoch, steps: scores.append((score, epoch, steps)), show_progress_bar=False,
    )
    # 3 steps per epoch: evaluations every 2 steps and at each epoch end -> steps 2, 3, 4, 6
    assert [s for _, _, s in scores] == [2, 3, 4, 6]
    best = CrossEncoder(str(tmp_path / "best"), device="cpu")
    assert evaluator(best)["dev_ndcg@10"] == pytest.approx(max(s for s, _, _ in scores))


def test_fit_with_a_plain_torch_loss_and_no_evaluator_saves_the_final_model(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    before = {k: v.clone() for k, v in model.hf_model.state_dict().items()}
    fit(model, DataLoader(examples(16, seed=2), batch_size=4), epochs=1, loss_fct=nn.MSELoss(),
        activation_fct=nn.Sigmoid(), scheduler="warmupconstant", warmup_steps=2, output_path=str(tmp_path / "final"),
        show_progress_bar=False)
    after = model.hf_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    saved = CrossEncoder(str(tmp_path / "final"), device="cpu")
    pairs = [("the dog", "a dog"), ("water", "car")]
    torch.testing.assert_close(torch.as_tensor(saved.predict(pairs)), torch.as_tensor(model.predict(pairs)))


def test_fit_rejects_what_it_cannot_honour(tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    loader = DataLoader(examples(8, seed=3), batch_size=4)
    with pytest.raises(ValueError, match="optimizer_class: only torch.optim.AdamW"):
        fit(model, loader, optimizer_class=torch.optim.SGD)
    with pytest.raises(ValueError, match="scheduler: expected one of"):
        fit(model, loader, scheduler="WarmupCosineWithHardRestarts")
