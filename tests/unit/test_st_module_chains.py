"""sentence-transformers 6.2 module chains for cross-encoders: Transformer(feature-extraction) + Pooling +
Dense(..., module_output_name="scores") (Normalize between), built with sentence-transformers' own classes on
tiny models, loaded, trained and saved by raycross, and loaded back by sentence-transformers with the same
scores; chains that are not cross-encoders get a clear error.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.losses import BinaryCrossEntropyLoss, ListNetLoss
from raycross.training import CrossEncoderTrainer
from raycross.training.checkpoints import load_model_weights
from tests.conftest import make_tiny_model, tiny_rerank_task
from tests.unit.test_causal import ATOL, PAIRS
from tests.unit.test_causal_training import args_for as train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHAINS = ("bert_cls_two_dense", "bert_weightedmean_residual", "bert_mean_max_normalize_3_labels", "qwen3_lasttoken")


def build_chain(kind: str, base, path):
    """A sentence-transformers 6.2 CrossEncoder of the chain `kind` on the tiny model `base`, saved at `path`."""
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.cross_encoder.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(7)
    transformer = Transformer(str(base), transformer_task="feature-extraction")
    dim = transformer.get_embedding_dimension()
    prompts = None
    if kind == "bert_cls_two_dense":
        modules = [Pooling(dim, pooling_mode="cls"), Dense(dim, 16, activation_function=nn.Tanh()),
                   Dense(16, 1, activation_function=None, module_output_name="scores")]
    elif kind == "bert_weightedmean_residual":
        modules = [Pooling(dim, pooling_mode="weightedmean"), Dense(dim, dim, activation_function=nn.GELU(), use_residual=True),
                   Dense(dim, 1, bias=False, activation_function=nn.Tanh(), module_output_name="scores")]
    elif kind == "bert_mean_max_normalize_3_labels":
        modules = [Pooling(dim, pooling_mode=("mean", "max")), Normalize(),
                   Dense(2 * dim, 3, activation_function=None, module_output_name="scores")]
    else:  # the documented LLM layout: last token, a Dense initialised as embed("yes") - embed("no")
        embeddings = transformer.model.get_input_embeddings().weight.data
        yes, no = (transformer.tokenizer.convert_tokens_to_ids(t) for t in ("yes", "no"))
        modules = [Pooling(dim, pooling_mode="lasttoken"),
                   Dense(dim, 1, bias=False, activation_function=None, module_output_name="scores",
                         init_weight=(embeddings[yes] - embeddings[no]).unsqueeze(0).clone())]
        prompts = {"judge": "judge the pair: "}
    model = STCrossEncoder(modules=[transformer, *modules], device="cpu", prompts=prompts)
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("encoder"), encoder_only=True)


@pytest.fixture(scope="module")
def chain_dirs(tmp_path_factory, tiny_encoder, tiny_causal_path):
    root = tmp_path_factory.mktemp("chains")
    return {kind: build_chain(kind, tiny_causal_path if kind.startswith("qwen3") else tiny_encoder, root / kind)
            for kind in CHAINS}


def st_model(path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    return STCrossEncoder(str(path), device="cpu")


def raw(model, pairs=PAIRS, **kwargs):
    return np.asarray(model.predict(pairs, activation_fn=nn.Identity(), **kwargs))


def module_types(path):
    return [m["type"] for m in json.loads((path / "modules.json").read_text())]


@pytest.mark.parametrize("kind", CHAINS)
def test_chain_scores_like_sentence_transformers_both_ways(kind, chain_dirs, tmp_path):
    saved = chain_dirs[kind]
    theirs = st_model(saved)
    ours = CrossEncoder(str(saved), device="cpu")
    assert ours.is_pooled and not ours.is_causal and ours.num_labels == theirs.num_labels
    np.testing.assert_allclose(raw(ours), raw(theirs), atol=ATOL)
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=ATOL)  # the saved activation
    if ours.num_labels == 1:
        docs = [d for _, d in PAIRS]
        assert [r["corpus_id"] for r in ours.rank("the man", docs)] == [r["corpus_id"] for r in theirs.rank("the man", docs)]
    for name in theirs.prompts:
        np.testing.assert_allclose(raw(ours, prompt_name=name), raw(theirs, prompt_name=name), atol=ATOL)

    ours.save_pretrained(tmp_path / "ours")  # raycross's save: the same module list, read by sentence-transformers
    assert module_types(tmp_path / "ours") == module_types(saved)
    np.testing.assert_allclose(raw(st_model(tmp_path / "ours")), raw(ours), atol=ATOL)
    np.testing.assert_allclose(raw(CrossEncoder(str(tmp_path / "ours"), device="cpu")), raw(ours), atol=0)


def test_padding_free_forward_only_where_exact(chain_dirs, monkeypatch):
    from raycross import pooled_scorer

    calls = []
    packed = pooled_scorer.packed_last_hidden
    monkeypatch.setattr(pooled_scorer, "packed_last_hidden", lambda *a: calls.append(1) or packed(*a))
    # an encoder chain (cls pooling) always runs the plain forward: identical scores with the switch on or off
    bert = CrossEncoder(str(chain_dirs["bert_cls_two_dense"]), device="cpu")
    assert bert.unpad_inputs and not bert.hf_model.can_pack()
    on = raw(bert)
    bert.unpad_inputs = False
    np.testing.assert_array_equal(raw(bert), on)
    assert not calls
    # a decoder with last-token pooling runs the real tokens only: the plain forward's scores within rounding
    qwen = CrossEncoder(str(chain_dirs["qwen3_lasttoken"]), device="cpu")
    assert qwen.hf_model.can_pack()
    long_pairs = PAIRS + [("a query " * 9, "a document " * 20)]  # rows of very different lengths
    on = raw(qwen, long_pairs, batch_size=8)
    assert calls
    qwen.unpad_inputs = False
    count = len(calls)
    np.testing.assert_allclose(raw(qwen, long_pairs, batch_size=8), on, atol=1e-5)
    assert len(calls) == count  # the switch turned it off
    qwen.train()  # a training pass (with gradients, one padded batch) too; this config has no dropout
    qwen.unpad_inputs = True
    with_grad = qwen(qwen.preprocess(long_pairs)).view(-1)
    assert with_grad.requires_grad and len(calls) == count + 1
    np.testing.assert_allclose(with_grad.detach().numpy(), on, atol=1e-5)


def test_every_trainable_parameter_gets_a_gradient(chain_dirs):
    # DDP (Ray Train workers) refuses parameters without gradients: BERT's own pooler is off the score path
    for kind in ("bert_cls_two_dense", "qwen3_lasttoken"):
        model = CrossEncoder(str(chain_dirs[kind]), device="cpu").train()
        model(model.preprocess(PAIRS)).sum().backward()
        trainable = {n: p for n, p in model.hf_model.named_parameters() if p.requires_grad}
        assert trainable and all(p.grad is not None for p in trainable.values()), \
            [n for n, p in trainable.items() if p.grad is None]
        frozen = [n for n, p in model.hf_model.named_parameters() if not p.requires_grad]
        assert frozen == ([] if kind.startswith("qwen3") else ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"])


def test_trained_chain_loads_in_sentence_transformers(chain_dirs, tmp_path):
    train, samples = tiny_rerank_task(seed=1, n_train=256, n_queries=20)
    model = CrossEncoder(str(chain_dirs["bert_cls_two_dense"]), device="cpu")
    start = {k: v.detach().clone() for k, v in model.hf_model.state_dict().items()}
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev")
    before = evaluator(model)["dev_ndcg@10"]
    CrossEncoderTrainer(model, train_args(tmp_path / "out", num_train_epochs=3), train_dataset=train,
                        loss=BinaryCrossEntropyLoss(model)).train()
    after = evaluator(model)["dev_ndcg@10"]
    assert after > before + 0.1, (before, after)
    changed = {k for k, v in model.hf_model.state_dict().items() if not torch.equal(v, start[k])}
    assert {"steps.0.linear.weight", "steps.1.linear.weight"} <= changed  # the head trained
    assert any(k.startswith("encoder.encoder.layer.") for k in changed)  # and the transformer

    exported = tmp_path / "out"  # the trainer's final export
    assert module_types(exported) == module_types(chain_dirs["bert_cls_two_dense"])
    probe = [(s["query"], d) for s in samples[:5] for d in s["positive"] + s["negative"]]
    np.testing.assert_allclose(raw(st_model(exported), probe), raw(model, probe), atol=ATOL)
    np.testing.assert_allclose(raw(CrossEncoder(str(exported), device="cpu"), probe), raw(model, probe), atol=1e-6)


def test_llm_chain_trains_with_a_listwise_loss_and_reloads_its_best_checkpoint(chain_dirs, tmp_path):
    train, samples = tiny_rerank_task(seed=2, n_train=128, n_queries=12)
    lists = {"query": train["a"][0::2],
             "docs": [[train["b"][2 * i], train["b"][2 * i + 1]] for i in range(64)],
             "labels": [[1.0, 0.0] for _ in range(64)]}
    model = CrossEncoder(str(chain_dirs["qwen3_lasttoken"]), device="cpu")
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev")
    args = train_args(tmp_path / "run", per_device_train_batch_size=8, eval_strategy="steps", eval_steps=4,
                      save_strategy="steps", save_steps=4, load_best_model_at_end=True,
                      metric_for_best_model="dev_ndcg@10", gradient_checkpointing=True)
    result = CrossEncoderTrainer(model, args, train_dataset=lists, loss=ListNetLoss(model, mini_batch_size=4),
                                 evaluator=evaluator).train()
    assert model.hf_model.encoder.is_activation_checkpointing
    best = max(e["eval_dev_ndcg@10"] for e in result.log_history if "eval_dev_ndcg@10" in e)
    assert evaluator(model)["dev_ndcg@10"] == pytest.approx(best, abs=1e-6)  # the best checkpoint was reloaded
    exported = tmp_path / "run"
    np.testing.assert_allclose(raw(st_model(exported)), raw(model), atol=ATOL)
    np.testing.assert_allclose(raw(st_model(exported), prompt_name="judge"), raw(model, prompt_name="judge"), atol=ATOL)


def test_chain_loads_in_bfloat16_with_its_head(chain_dirs):
    full = CrossEncoder(str(chain_dirs["qwen3_lasttoken"]), device="cpu")
    half = CrossEncoder(str(chain_dirs["qwen3_lasttoken"]), device="cpu", model_kwargs={"dtype": "bfloat16"})
    assert {p.dtype for p in half.hf_model.parameters()} == {torch.bfloat16}
    np.testing.assert_allclose(raw(half), raw(full), atol=0.05)


def test_checkpoint_weights_load_into_the_chain(chain_dirs, tmp_path):
    source = CrossEncoder(str(chain_dirs["bert_weightedmean_residual"]), device="cpu")
    with torch.no_grad():
        for param in source.hf_model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    source.save_pretrained(tmp_path / "ckpt")
    target = CrossEncoder(str(chain_dirs["bert_weightedmean_residual"]), device="cpu")
    assert not np.allclose(raw(target), raw(source))
    load_model_weights(target.hf_model, tmp_path / "ckpt")
    np.testing.assert_array_equal(raw(target), raw(source))


def test_hub_chain_fetches_the_head_without_the_transformer_weights(chain_dirs, monkeypatch):
    import huggingface_hub

    from raycross import st_modules
    from raycross.pooled_scorer import PooledScoreModel

    saved, fetched = chain_dirs["bert_cls_two_dense"], []

    def fake_download(repo_id, filename, **kwargs):  # the hub, served from a local save
        fetched.append(filename)
        if not (saved / filename).is_file():
            raise FileNotFoundError(filename)
        return str(saved / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    layout = st_modules.read_layout(st_modules.fetch_layout("someone/chain"))
    assert layout.task == "feature-extraction" and layout.steps == [("Dense", "2_Dense"), ("Dense", "3_Dense")]
    assert {"2_Dense/model.safetensors", "3_Dense/model.safetensors"} <= set(fetched) and "model.safetensors" not in fetched
    local = CrossEncoder(str(saved), device="cpu").hf_model
    head = PooledScoreModel.from_directory(local.encoder, layout.root, layout.pooling_dir, layout.steps)
    for ours, theirs in zip(head.steps, local.steps):
        assert torch.equal(ours.linear.weight, theirs.linear.weight)


def edit_modules(path, transform):
    modules = json.loads((path / "modules.json").read_text())
    (path / "modules.json").write_text(json.dumps(transform(modules)))


def test_layouts_that_are_not_cross_encoders_fail_clearly(chain_dirs, tmp_path):
    def copy(name):
        target = tmp_path / name
        shutil.copytree(chain_dirs["bert_cls_two_dense"], target)
        return target

    no_scores = copy("no_scores")  # the score Dense removed: nothing writes "scores"
    edit_modules(no_scores, lambda m: m[:3])
    with pytest.raises(ValueError, match="writes no 'scores'.*Dense"):
        CrossEncoder(str(no_scores))
    router = copy("router")
    edit_modules(router, lambda m: [{**m[0], "type": "sentence_transformers.base.modules.router.Router"}] + m[1:])
    with pytest.raises(ValueError, match=r"found modules \['sentence_transformers.base.modules.router.Router'.*Pooling"):
        CrossEncoder(str(router))
    custom = copy("custom")
    edit_modules(custom, lambda m: m[:2] + [{**m[2], "type": "my_package.FancyHead"}] + m[3:])
    with pytest.raises(ValueError, match="my_package.FancyHead"):
        CrossEncoder(str(custom))
    wrong_task = copy("wrong_task")
    config = json.loads((wrong_task / "sentence_bert_config.json").read_text())
    (wrong_task / "sentence_bert_config.json").write_text(json.dumps({**config, "transformer_task": "any-to-any"}))
    with pytest.raises(ValueError, match="transformer_task='any-to-any'.*'feature-extraction'"):
        CrossEncoder(str(wrong_task))
    unread = copy("unread")  # the Dense reads a feature nothing writes
    dense = json.loads((unread / "2_Dense" / "config.json").read_text())
    (unread / "2_Dense" / "config.json").write_text(json.dumps({**dense, "module_input_name": "pooled"}))
    with pytest.raises(ValueError, match="reads 'pooled'"):
        CrossEncoder(str(unread))
    no_prompt = copy("no_prompt")
    pooling = json.loads((no_prompt / "1_Pooling" / "config.json").read_text())
    (no_prompt / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "include_prompt": False}))
    with pytest.raises(ValueError, match="include_prompt=False"):
        CrossEncoder(str(no_prompt))

    model = CrossEncoder(str(chain_dirs["bert_cls_two_dense"]), device="cpu")
    with pytest.raises(ValueError, match="Pooling \\+ Dense"):
        model.add_adapter({"r": 4, "target_modules": ["query", "value"]})
    with pytest.raises(ValueError, match="num_labels=3.*writes 1 scores"):
        CrossEncoder(str(chain_dirs["bert_cls_two_dense"]), num_labels=3)
