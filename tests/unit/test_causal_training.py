"""Training causal-LM rerankers in this process: losses (pointwise, listwise, GradCache), the trainer with
bf16 autocast, gradient checkpointing and multi-dataset samplers, and the exported model.

The task: rerank one "positive-class" word among "negative-class" words (tests/conftest.py tiny_rerank_task).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.losses import (
    BinaryCrossEntropyLoss,
    CachedMultipleNegativesRankingLoss,
    ListNetLoss,
    MultipleNegativesRankingLoss,
)
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
from tests.conftest import tiny_rerank_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def args_for(path, **kwargs) -> CrossEncoderTrainingArguments:
    base = dict(num_train_epochs=1, per_device_train_batch_size=16, learning_rate=3e-3, logging_steps=4,
                save_strategy="no", disable_tqdm=True, seed=3, warmup_ratio=0.0)
    base.update(kwargs)
    return CrossEncoderTrainingArguments(str(path), **base)


def test_bce_training_lifts_the_reranking_metric_and_exports_a_causal_reranker(tmp_path, tiny_causal_path):
    train, samples = tiny_rerank_task(seed=1, n_train=384, n_queries=30)
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev")
    model = CrossEncoder(str(tiny_causal_path), device="cpu")
    before = evaluator(model)["dev_ndcg@10"]
    args = args_for(tmp_path / "out", num_train_epochs=2, eval_strategy="epoch")
    result = CrossEncoderTrainer(model, args, train_dataset=train, loss=BinaryCrossEntropyLoss(model),
                                 evaluator=evaluator).train()
    after = evaluator(model)["dev_ndcg@10"]
    assert after > before + 0.1, (before, after)  # about 0.47 -> 0.68
    assert [e["eval_dev_ndcg@10"] for e in result.log_history if "eval_dev_ndcg@10" in e][-1] == pytest.approx(after)

    model.save_pretrained(tmp_path / "final")
    reloaded = CrossEncoder(str(tmp_path / "final"), device="cpu")
    pairs = [(s["query"], d) for s in samples[:5] for d in s["positive"] + s["negative"]]
    assert reloaded.is_causal
    np.testing.assert_allclose(reloaded.predict(pairs), model.predict(pairs), atol=1e-6)
    from sentence_transformers import CrossEncoder as STCrossEncoder

    theirs = STCrossEncoder(str(tmp_path / "final"), device="cpu")  # the trained model scores the same in ST 6.2
    np.testing.assert_allclose(theirs.predict(pairs), model.predict(pairs), atol=1e-5)


def test_listwise_bf16_with_gradient_checkpointing_and_two_datasets(tmp_path, tiny_llama_path):
    train, _ = tiny_rerank_task(seed=2, n_train=128)
    pairs_data = {k: v[:64] for k, v in train.items()}
    queries = train["a"][0::2][:32]
    lists = {"query": queries,
             "docs": [[train["b"][2 * i], train["b"][2 * i + 1], train["b"][(2 * i + 3) % 128]] for i in range(32)],
             "labels": [[1.0, 0.0, float(train["label"][(2 * i + 3) % 128])] for i in range(32)]}
    model = CrossEncoder(str(tiny_llama_path), device="cpu")
    start = {k: v.detach().clone() for k, v in model.hf_model.state_dict().items()}
    seen: list[str] = []

    class Recording(nn.Module):
        def __init__(self, name, inner):
            super().__init__()
            self.name, self.inner, self.model = name, inner, inner.model

        def forward(self, inputs, labels):
            seen.append(self.name)
            return self.inner(inputs, labels)

    losses = {"pairs": Recording("pairs", BinaryCrossEntropyLoss(model)),
              "lists": Recording("lists", ListNetLoss(model, mini_batch_size=8))}
    args = args_for(tmp_path, bf16=True, gradient_checkpointing=True, per_device_train_batch_size=8,
                    multi_dataset_batch_sampler="round_robin", logging_steps=1)
    result = CrossEncoderTrainer(model, args, train_dataset={"pairs": pairs_data, "lists": lists}, loss=losses).train()
    assert result.global_step == 8 and seen.count("pairs") == seen.count("lists") == 4
    assert all(math.isfinite(e["loss"]) for e in result.log_history if "loss" in e)
    changed = [k for k, v in model.hf_model.state_dict().items() if not torch.equal(v, start[k])]
    assert any("layers.0.self_attn" in k for k in changed) and any("lm_head" in k for k in changed)


@pytest.mark.parametrize("fixture", ["tiny_causal_path", "tiny_llama_path"])
def test_cached_mnrl_gradients_equal_mnrl_gradients(fixture, request):
    model = CrossEncoder(str(request.getfixturevalue(fixture)), device="cpu")
    model.train()
    train, _ = tiny_rerank_task(seed=3, n_train=24)
    inputs = [train["a"][0::2], train["b"][0::2]]  # (query, positive) pairs, in-batch negatives
    grads, values = [], []
    for loss in (MultipleNegativesRankingLoss(model, num_negatives=3),
                 CachedMultipleNegativesRankingLoss(model, num_negatives=3, mini_batch_size=4)):
        torch.manual_seed(0)
        model.zero_grad()
        value = loss(inputs, None)
        value.backward()
        values.append(float(value.detach()))
        grads.append({n: p.grad.clone() for n, p in model.hf_model.named_parameters() if p.grad is not None})
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_cached_mnrl_trains_in_the_trainer(tmp_path, tiny_causal_path):
    train, _ = tiny_rerank_task(seed=4, n_train=96)
    rows = {"query": train["a"][0::2], "positive": train["b"][0::2]}
    model = CrossEncoder(str(tiny_causal_path), device="cpu")
    loss = CachedMultipleNegativesRankingLoss(model, num_negatives=2, mini_batch_size=8)
    result = CrossEncoderTrainer(model, args_for(tmp_path, logging_steps=1), train_dataset=rows, loss=loss).train()
    assert result.global_step == 3
    assert all(math.isfinite(e["loss"]) for e in result.log_history if "loss" in e)


def test_training_prompts_reach_the_tokenization_per_dataset(tmp_path, tiny_causal_path):
    train, _ = tiny_rerank_task(seed=6, n_train=64)
    halves = {"a": {k: v[:32] for k, v in train.items()}, "b": {k: v[32:] for k, v in train.items()}}
    prefixed = {"a": {**halves["a"], "a": ["Query: " + q for q in halves["a"]["a"]]}, "b": halves["b"]}
    eval_rows = {k: v[:16] for k, v in train.items()}
    results = []
    for data, prompts, eval_prompted in ((halves, {"a": "Query: "}, {"a": "Query: "}),
                                         (prefixed, None, None)):
        model = CrossEncoder(str(tiny_causal_path), device="cpu")
        losses = {"a": BinaryCrossEntropyLoss(model), "b": BinaryCrossEntropyLoss(model)}
        eval_data = {"a": eval_rows if eval_prompted else {**eval_rows, "a": ["Query: " + q for q in eval_rows["a"]]}}
        args = args_for(tmp_path / str(len(results)), per_device_train_batch_size=8, prompts=prompts,
                        multi_dataset_batch_sampler="round_robin", eval_strategy="epoch", logging_steps=1)
        result = CrossEncoderTrainer(model, args, train_dataset=data, eval_dataset=eval_data, loss=losses).train()
        results.append((result, model))
    (with_prompts, model_p), (by_hand, model_h) = results
    assert with_prompts.global_step == by_hand.global_step == 8
    losses_p = [e["loss"] for e in with_prompts.log_history if "loss" in e]
    losses_h = [e["loss"] for e in by_hand.log_history if "loss" in e]
    assert losses_p == pytest.approx(losses_h, abs=1e-6)  # the prompt reached exactly the "a" batches
    evals = [[e["eval_loss"] for e in r.log_history if "eval_loss" in e] for r, _ in results]
    assert evals[0] == pytest.approx(evals[1], abs=1e-6)
    for name, tensor in model_h.hf_model.state_dict().items():
        torch.testing.assert_close(model_p.hf_model.state_dict()[name], tensor, atol=1e-6, rtol=0)


def test_training_prompt_errors(tmp_path, tiny_causal_path):
    with pytest.raises(ValueError, match="prompts\\['a'\\]: cross-encoder prompts cannot be per column"):
        args_for(tmp_path, prompts={"a": {"query": "Q: "}})
    assert args_for(tmp_path, prompts='{"a": "Q: "}').prompts == {"a": "Q: "}  # JSON, as in the CLI
    model = CrossEncoder(str(tiny_causal_path), device="cpu")
    train, _ = tiny_rerank_task(seed=7, n_train=16)
    with pytest.raises(ValueError, match="prompts: \\['c'\\] are not dataset names; the datasets are \\['a', 'b'\\]"):
        CrossEncoderTrainer(model, args_for(tmp_path, prompts={"c": "Q: "}), train_dataset={"a": train, "b": train},
                            loss=BinaryCrossEntropyLoss(model))
    with pytest.raises(ValueError, match="needs train_dataset as a dict"):
        CrossEncoderTrainer(model, args_for(tmp_path, prompts={"a": "Q: "}), train_dataset=train,
                            loss=BinaryCrossEntropyLoss(model))

    class NoPromptLoss(nn.Module):  # a custom loss that tokenizes by itself and cannot take a prompt
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, inputs, labels):
            return self.model(self.model.preprocess(list(zip(*inputs)))).mean()

    with pytest.raises(TypeError, match="NoPromptLoss.forward\\(inputs, labels\\) takes no `prompt`"):
        CrossEncoderTrainer(model, args_for(tmp_path, prompts="Q: "), train_dataset=train, loss=NoPromptLoss(model))
