"""LoRA adapters (peft) on a CrossEncoder: only adapter + head train, adapter-only and merged saves score
identically in raycross, plain peft and sentence-transformers, checkpoints hold only the trainable state,
and bad adapter / strategy input fails before any worker starts.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from raycross import CrossEncoder
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
PAIRS = [("the dog", "a dog runs"), ("cat", "water is blue"), ("a man", "the man plays"), ("food", "a car")]
WORDS = "the man woman dog cat water food house car street city play run walk".split()


def rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        passage = " ".join(rng.choices(WORDS, k=4))
        out.append({"query": " ".join(rng.choices(WORDS, k=2)), "passage": passage,
                    "label": int("dog" in passage.split())})
    return out


def perturbed_adapter_model(path: Path) -> CrossEncoder:
    model = CrossEncoder(path, device="cpu")
    model.add_adapter(LORA)
    torch.manual_seed(3)
    for name, param in model.hf_model.named_parameters():
        if "lora_B" in name or name.startswith("classifier"):
            param.data += 0.2 * torch.randn_like(param)
    return model


def test_adapter_trains_only_adapter_and_head_parameters(tiny_model_path):
    model = CrossEncoder(tiny_model_path, device="cpu")
    model.add_adapter(LORA)
    trainable = [n for n, p in model.hf_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("classifier.") for n in trainable)
    assert {"classifier.weight", "classifier.bias"} <= set(trainable)
    assert model.has_adapter and model.active_adapters() == ["default"] and model.active_adapter() == "default"
    state = model.get_adapter_state_dict()
    assert "base_model.model.classifier.weight" in state and any("lora_A" in k for k in state)


def test_adapter_only_save_round_trips_and_loads_in_peft(tiny_model_path, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = perturbed_adapter_model(tiny_model_path)
    expected = model.predict(PAIRS)
    model.save_pretrained(tmp_path / "adapter")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all("lora_" in k or ".classifier." in k for k in saved)  # no base weights

    reloaded = CrossEncoder(tmp_path / "adapter", device="cpu")
    assert reloaded.has_adapter and reloaded.active_adapters() == ["default"]
    np.testing.assert_allclose(reloaded.predict(PAIRS), expected, atol=1e-6)

    # plain peft on the base model reads the same directory (the head through modules_to_save)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_path)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        logits = peft_model(**tokenizer(*map(list, zip(*PAIRS)), padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(torch.sigmoid(logits[:, 0]).numpy(), expected, atol=1e-6)

    # load_adapter onto a fresh base model
    fresh = CrossEncoder(tiny_model_path, device="cpu")
    fresh.load_adapter(tmp_path / "adapter")
    np.testing.assert_allclose(fresh.predict(PAIRS), expected, atol=1e-6)
    assert not any(p.requires_grad for p in fresh.hf_model.parameters())  # is_trainable=False


def test_merged_save_loads_in_raycross_transformers_and_sentence_transformers(tiny_model_path, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from transformers import AutoModelForSequenceClassification

    model = perturbed_adapter_model(tiny_model_path)
    expected = model.predict(PAIRS)
    model.save_pretrained(tmp_path / "merged", merge_adapter=True)
    assert model.has_adapter  # saving merged leaves the model as it was
    plain = CrossEncoder(tmp_path / "merged", device="cpu")
    assert not plain.has_adapter
    np.testing.assert_allclose(plain.predict(PAIRS), expected, atol=1e-6)
    np.testing.assert_allclose(STCrossEncoder(str(tmp_path / "merged"), device="cpu").predict(PAIRS), expected,
                               atol=1e-6)
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert not any("lora" in k for k in hf.state_dict())

    disabled_before = None
    model.disable_adapters()
    disabled_before = model.predict(PAIRS)
    model.enable_adapters()
    assert not np.allclose(disabled_before, expected)
    np.testing.assert_allclose(model.predict(PAIRS), expected, atol=1e-6)
    model.merge_and_unload()
    assert not model.has_adapter and all(p.requires_grad for p in model.hf_model.parameters())
    np.testing.assert_allclose(model.predict(PAIRS), expected, atol=1e-6)


def test_bad_adapter_input_is_rejected(tiny_model_path, tmp_path, forbid_ray_start):
    model = CrossEncoder(tiny_model_path, device="cpu")
    with pytest.raises(ValueError, match=r"target_modules: no module .* matches \['nope'\].*query"):
        model.add_adapter({"r": 4, "target_modules": ["query", "nope"]})
    assert not model.has_adapter
    model.add_adapter(LORA)
    with pytest.raises(ValueError, match="already has the adapter 'default'"):
        model.add_adapter(LORA, adapter_name="second")
    with pytest.raises(ValueError, match="adapter_name: expected one of \\['default'\\]"):
        model.set_adapter("second")
    data = rows(16, 0)
    args = CrossEncoderTrainingArguments(str(tmp_path / "o"), lora_config=LORA, num_workers=2)
    with pytest.raises(ValueError, match="lora_config: the model already has the adapter 'default'"):
        CrossEncoderTrainer(model, args, train_dataset=data)
    fresh = CrossEncoder(tiny_model_path, device="cpu")
    bad = CrossEncoderTrainingArguments(str(tmp_path / "o"), lora_config={"target_modules": ["qkv_proj"]},
                                        num_workers=2)
    with pytest.raises(ValueError, match=r"lora_config.target_modules: no module .* \['qkv_proj'\]"):
        CrossEncoderTrainer(fresh, bad, train_dataset=data)
    with pytest.raises(ValueError, match="parallel_strategy: 'fsdp' .* num_workers >= 1, found num_workers=0"):
        CrossEncoderTrainingArguments(str(tmp_path / "o"), parallel_strategy="fsdp")
    with pytest.raises(ValueError, match="parallel_strategy: expected 'ddp' or 'fsdp', found 'zero3'"):
        CrossEncoderTrainingArguments(str(tmp_path / "o"), parallel_strategy="zero3", num_workers=2)
    with pytest.raises(ValueError, match="parallel_strategy: 'fsdp' supports bf16 .* fp16=True"):
        CrossEncoderTrainingArguments(str(tmp_path / "o"), parallel_strategy="fsdp", num_workers=2, fp16=True)
    with pytest.raises(TypeError, match="lora_config: expected a peft LoraConfig"):
        CrossEncoderTrainingArguments(str(tmp_path / "o"), lora_config=["query"])


def test_training_with_lora_config_keeps_base_weights_and_checkpoints_only_trainable_state(tiny_model_path,
                                                                                           tmp_path):
    model = CrossEncoder(tiny_model_path, device="cpu")
    base_before = {k: v.clone() for k, v in model.hf_model.state_dict().items()}
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=8, learning_rate=5e-3, save_steps=3,
        logging_steps=1, disable_tqdm=True, seed=5, lora_config=LORA,
    )
    result = CrossEncoderTrainer(model, args, train_dataset=rows(64, 1)).train()
    assert result.global_step == 6 and model.has_adapter
    state = model.hf_model.state_dict()
    for key, before in base_before.items():
        key_now = key.replace(".query.", ".query.base_layer.").replace(".value.", ".value.base_layer.")
        if key.startswith("classifier."):
            assert not torch.equal(state[key], before), key  # the head trained
        else:
            assert torch.equal(state[key_now], before), key  # the base stayed frozen

    checkpoint = tmp_path / "out" / "checkpoint-3"
    files = {p.name for p in checkpoint.iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    trainable = sum(p.requires_grad for p in model.hf_model.parameters())
    assert sum(len(g["params"]) for g in optimizer["param_groups"]) == trainable

    # the final model is adapter-only and scores as the trained model; resuming from checkpoint-3 with a
    # fresh model reproduces the same final weights
    expected = model.predict(PAIRS)
    np.testing.assert_allclose(CrossEncoder(tmp_path / "out", device="cpu").predict(PAIRS), expected, atol=1e-6)
    again = CrossEncoder(tiny_model_path, device="cpu")
    resumed_args = CrossEncoderTrainingArguments(**{**args.to_dict(), "output_dir": str(tmp_path / "resumed"),
                                                    "lora_config": LORA})
    CrossEncoderTrainer(again, resumed_args, train_dataset=rows(64, 1)).train(resume_from_checkpoint=str(checkpoint))
    np.testing.assert_allclose(again.predict(PAIRS), expected, atol=1e-6)


def test_training_with_merge_adapter_exports_a_plain_model(tiny_model_path, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model = CrossEncoder(tiny_model_path, device="cpu")
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8, learning_rate=5e-3,
        save_strategy="no", disable_tqdm=True, lora_config=LORA, merge_adapter=True,
    )
    CrossEncoderTrainer(model, args, train_dataset=rows(32, 2)).train()
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    np.testing.assert_allclose(STCrossEncoder(str(tmp_path / "out"), device="cpu").predict(PAIRS),
                               model.predict(PAIRS), atol=1e-6)


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_decoder_rerankers_get_per_layer_fsdp_units_and_a_lora_adapter_with_the_score_head(tmp_path, kind):
    from raycross.training.fsdp import transformer_layers

    from tests.conftest import make_tiny_decoder

    path = make_tiny_decoder(tmp_path / kind, kind)
    model = CrossEncoder(path, device="cpu")
    layers = transformer_layers(model.hf_model)
    assert len(layers) == 2 and all(type(layer).__name__.endswith("DecoderLayer") for layer in layers)
    model.add_adapter({"r": 4, "target_modules": ["q_proj", "v_proj"]})
    trainable = [n for n, p in model.hf_model.named_parameters() if p.requires_grad]
    assert "score.weight" in trainable and all("lora_" in n or n.startswith("score.") for n in trainable)
    for name, param in model.hf_model.named_parameters():
        if "lora_B" in name or name.startswith("score"):
            param.data += 0.2 * torch.randn_like(param)
    expected = model.predict(PAIRS)
    model.save_pretrained(tmp_path / "adapter")
    np.testing.assert_allclose(CrossEncoder(tmp_path / "adapter", device="cpu").predict(PAIRS), expected, atol=1e-6)


def test_config_training_section_takes_the_big_model_keys(tmp_path):
    from raycross.config import ConfigError, build_training_args

    args = build_training_args({"output_dir": str(tmp_path), "num_workers": 2, "parallel_strategy": "fsdp",
                                "lora_config": LORA, "merge_adapter": True, "bf16": True})
    assert (args.parallel_strategy, args.lora_config, args.merge_adapter) == ("fsdp", LORA, True)
    assert args.to_dict()["lora_config"] == LORA
    with pytest.raises(ConfigError, match="training.parallel_strategy"):
        build_training_args({"output_dir": str(tmp_path), "parallel_strategy": "fsdp"})


@pytest.mark.parametrize("arch", ["qwen3", "llama"])  # tied (qwen3) and untied (llama) LM heads
def test_causal_reranker_adapter_trains_the_score_token_rows(tmp_path, arch):
    from tests.conftest import make_tiny_causal_model
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model = CrossEncoder(make_tiny_causal_model(tmp_path / arch, arch=arch), device="cpu")
    embeddings_before = model.hf_model.get_input_embeddings().weight.detach().clone()
    before = model.predict(PAIRS)
    model.add_adapter({"r": 4, "target_modules": ["q_proj", "v_proj"]})
    trainable = [n for n, p in model.hf_model.named_parameters() if p.requires_grad]
    assert "lm_head.score_rows.weight" in trainable
    assert all("lora_" in n or n == "lm_head.score_rows.weight" for n in trainable), trainable
    assert model.hf_model.lm_head.score_rows.weight.shape[0] == 2  # the "yes" and "no" rows only
    np.testing.assert_allclose(model.predict(PAIRS), before, atol=1e-6)  # fresh adapter: same scores
    with torch.no_grad():
        model.hf_model.lm_head.score_rows.weight.add_(0.5 * torch.randn_like(model.hf_model.lm_head.score_rows.weight))
        for name, param in model.hf_model.named_parameters():
            if "lora_B" in name:
                param.add_(0.2 * torch.randn_like(param))
    expected = model.predict(PAIRS)
    assert not np.allclose(expected, before, atol=1e-3)
    # the score computed from two rows equals the full LM head at the last position
    model.unpad_inputs = False
    features = model.preprocess(PAIRS)
    with torch.no_grad():
        full = model.hf_model(**features, logits_to_keep=1).logits[:, -1]
    ids = model.score_head.token_ids
    np.testing.assert_allclose(model.score_head(full)[:, 0].numpy(), model(features)[:, 0].detach().numpy(), atol=1e-5)
    model.unpad_inputs = True

    model.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert saved["base_model.model.lm_head.score_rows.weight"].shape[0] == len(ids)
    np.testing.assert_allclose(CrossEncoder(tmp_path / "adapter", device="cpu").predict(PAIRS), expected, atol=1e-5)
    model.save_pretrained(tmp_path / "merged", merge_adapter=True)
    np.testing.assert_allclose(CrossEncoder(tmp_path / "merged", device="cpu").predict(PAIRS), expected, atol=1e-5)
    np.testing.assert_allclose(STCrossEncoder(str(tmp_path / "merged"), device="cpu").predict(PAIRS), expected,
                               atol=1e-5)
    model.merge_and_unload()
    assert type(model.hf_model.lm_head) is torch.nn.Linear
    np.testing.assert_allclose(model.predict(PAIRS), expected, atol=1e-5)
    if arch == "llama":  # untied: the input embeddings never change
        assert torch.equal(model.hf_model.get_input_embeddings().weight, embeddings_before)
