"""FSDP2 training on Ray Train (gloo, CPU, 2 workers): the DDP loss curve for the same seed, sharded
checkpoints reported through Ray Train, recovery from a killed worker to the uninterrupted run's weights,
resharding resume on 1 and 3 workers, the final export in raycross / transformers / sentence-transformers,
and FSDP + LoRA.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, TrainerCallback

from raycross import CrossEncoder
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

pytestmark = pytest.mark.slow

WORDS = "the man woman dog cat water food house car street city play run walk".split()
PAIRS = [("man dog", "a dog runs"), ("woman cat", "water house"), ("the city", "a dog in the street")]
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}


@pytest.fixture(autouse=True)
def ship_this_module_by_value(ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        passage = rng.choices(WORDS, k=4)
        rows.append({"query": " ".join(rng.choices(WORDS, k=2)), "passage": " ".join(passage),
                     "label": int("dog" in passage)})
    return rows


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


class KillWorkerOnce(TrainerCallback):
    """Rank 1 dies at `step` on the first attempt only."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, marker

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and _rank() == 1 and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os._exit(1)


class DumpStartWeights(TrainerCallback):
    """Every worker gathers the full weights at the start of training (after resuming); rank 0 saves them."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from raycross.training import fsdp

        full = fsdp.full_state_dict(model.hf_model)
        if _rank() == 0:
            torch.save({"state": full, "step": state.global_step}, self.path)


def train(tmp_path: Path, name: str, tiny_model_path: Path, resume: str | None = None, callbacks=(), **kwargs):
    model = CrossEncoder(str(tiny_model_path), device="cpu", config_kwargs=NO_DROPOUT)
    options = dict(max_steps=6, per_device_train_batch_size=8, learning_rate=2e-3, logging_steps=1,
                   save_strategy="steps", save_steps=3, eval_strategy="steps", eval_steps=3, seed=3, num_workers=2,
                   resources_per_worker={"CPU": 0.5}, disable_tqdm=True, parallel_strategy="fsdp")
    options.update(kwargs)
    args = CrossEncoderTrainingArguments(str(tmp_path / name), **options)
    trainer = CrossEncoderTrainer(model, args, train_dataset=make_rows(96, seed=5), eval_dataset=make_rows(24, seed=6),
                                  callbacks=list(callbacks))
    return model, trainer.train(resume_from_checkpoint=resume)


def curve(result, key: str = "loss") -> list[float]:
    return [e[key] for e in sorted(result.log_history, key=lambda e: e["step"]) if key in e]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_path):
    root = tmp_path_factory.mktemp("fsdp-ray")
    ddp = train(root, "ddp", tiny_model_path, parallel_strategy="ddp")
    fsdp = train(root, "fsdp", tiny_model_path)
    return root, ddp, fsdp


def test_fsdp_follows_the_ddp_loss_curve_and_exports_a_full_model(runs):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    root, (ddp_model, ddp), (fsdp_model, fsdp) = runs
    assert ddp.global_step == fsdp.global_step == 6
    assert len(curve(fsdp)) == 6 and curve(fsdp)[0] != curve(fsdp)[-1]
    np.testing.assert_allclose(curve(fsdp), curve(ddp), atol=1e-4)
    # evaluation on rank 0 with gathered parameters gives DDP's eval loss
    np.testing.assert_allclose(curve(fsdp, "eval_loss"), curve(ddp, "eval_loss"), atol=1e-4)
    assert len(curve(fsdp, "eval_loss")) == 2

    # the checkpoints are sharded: one file per worker and DCP metadata, reported through Ray Train
    sharded = root / "fsdp" / "checkpoint-3" / "sharded"
    assert sorted(p.name for p in sharded.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (root / "fsdp" / "checkpoint-3" / "model.safetensors").exists()

    # the final export is a full model: raycross, transformers and sentence-transformers score alike
    expected = fsdp_model.predict(PAIRS)
    np.testing.assert_allclose(expected, ddp_model.predict(PAIRS), atol=1e-4)
    reloaded = CrossEncoder(str(root / "fsdp"), device="cpu")
    np.testing.assert_allclose(reloaded.predict(PAIRS), expected, atol=1e-6)
    np.testing.assert_allclose(STCrossEncoder(str(root / "fsdp"), device="cpu").predict(PAIRS), expected, atol=1e-6)
    hf = AutoModelForSequenceClassification.from_pretrained(root / "fsdp").eval()
    with torch.no_grad():
        logits = hf(**reloaded.preprocess(PAIRS)).logits[:, 0]
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), expected, atol=1e-6)


def test_killed_fsdp_worker_resumes_to_the_uninterrupted_weights(runs, tmp_path, tiny_model_path):
    _, _, (fsdp_model, fsdp) = runs
    marker = tmp_path / "killed"
    model, result = train(tmp_path, "killed", tiny_model_path, max_failures=1,
                          callbacks=[KillWorkerOnce(4, str(marker))])
    assert marker.exists() and result.global_step == 6
    np.testing.assert_allclose(curve(result), curve(fsdp), atol=1e-6)
    reference = fsdp_model.hf_model.state_dict()
    for key, value in model.hf_model.state_dict().items():
        torch.testing.assert_close(value, reference[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize("workers", [1, 3])
def test_two_worker_checkpoint_resumes_on_a_different_number_of_workers(runs, tmp_path, tiny_model_path, workers):
    from raycross.training import fsdp

    root, _, _ = runs
    checkpoint = root / "fsdp" / "checkpoint-3"
    dump = tmp_path / "start.pt"
    _, result = train(tmp_path, f"on{workers}", tiny_model_path, resume=str(checkpoint), num_workers=workers,
                      resources_per_worker={"CPU": 0.5 if workers < 3 else 0.25},
                      callbacks=[DumpStartWeights(str(dump))])
    started = torch.load(dump, weights_only=False)
    assert started["step"] == 3  # resumed, not restarted
    plain = CrossEncoder(str(root / "fsdp"), device="cpu", config_kwargs=NO_DROPOUT)
    fsdp.load_full_state(plain.hf_model, checkpoint)
    for key, value in plain.hf_model.state_dict().items():
        assert torch.equal(started["state"][key], value), key
    assert result.global_step == 6
    losses = {e["step"]: e["loss"] for e in result.log_history if "loss" in e}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(np.isfinite(list(losses.values())))


def test_fsdp_with_lora_trains_adapter_and_head_and_checkpoints_only_them(tmp_path, tiny_model_path):
    from raycross.training import fsdp

    base = CrossEncoder(str(tiny_model_path), device="cpu", config_kwargs=NO_DROPOUT)
    model, result = train(tmp_path, "lora", tiny_model_path, max_steps=4, save_steps=2, eval_strategy="no",
                          lora_config=LORA)
    assert result.global_step == 4 and model.has_adapter
    metadata = fsdp._read_metadata(tmp_path / "lora" / "checkpoint-2" / "sharded").state_dict_metadata
    model_keys = [k for k in metadata if k.startswith("model.")]
    assert model_keys and all("lora_" in k or k.startswith("model.classifier.") for k in model_keys)
    state, before = model.hf_model.state_dict(), base.hf_model.state_dict()
    for key, value in before.items():
        now = state.get(key, state.get(key.replace(".query.", ".query.base_layer.").replace(".value.", ".value.base_layer.")))
        if key.startswith("classifier."):
            assert not torch.equal(now, value), key
        else:
            assert torch.equal(now, value), key
    # the final model is adapter-only and scores as the trained model on the driver
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    reloaded = CrossEncoder(str(tmp_path / "lora"), device="cpu")
    np.testing.assert_allclose(reloaded.predict(PAIRS), model.predict(PAIRS), atol=1e-6)
