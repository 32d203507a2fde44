"""FSDP2 mechanics in plain gloo process groups (torch.multiprocessing, no Ray): a sharded tiny BERT
(and a tiny Qwen3 reranker) follows DDP's loss curve, evaluates alone on rank 0 with gathered parameters, trains with a LoRA
adapter and with activation checkpointing + bf16, and a 2-worker sharded checkpoint (model + optimizer)
loads on 1 and on 3 workers and into an unsharded model in one process.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PAIRS = [("the dog", "a dog runs"), ("cat", "water is blue"), ("a man", "the man plays"), ("food", "a car"),
         ("city", "a city street"), ("house", "an old house"), ("run", "the cat sleeps"), ("water", "blue water")]
LABELS = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
STEPS = 4
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}


def _batch(rank: int, world: int, step: int) -> tuple[list, torch.Tensor]:
    rows = [(step * world * 2 + rank * 2 + k) % len(PAIRS) for k in range(2)]
    return [PAIRS[i] for i in rows], torch.tensor([LABELS[i] for i in rows])


def _train(model, world: int, rank: int, steps: int = STEPS, wrapped=None,
           scores: bool = False) -> tuple[list[float], torch.optim.Optimizer]:
    """AdamW steps on this rank's rows; returns the mean loss over workers per step. `scores`: through
    ``CrossEncoder.forward`` (e.g. a causal reranker's LogitScore) instead of the transformers forward."""
    from raycross.training.optim import create_optimizer

    forward = wrapped or model.model
    optimizer = create_optimizer(model.hf_model, lr=1e-2, weight_decay=0.01)
    losses = []
    model.train()
    for step in range(steps):
        pairs, labels = _batch(rank, world, step)
        features = model.preprocess(pairs)
        logits = (model(features) if scores else forward(**features).logits).view(-1).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    return losses, optimizer


def _load(path: str, adapter: bool = False, targets: list[str] | None = None):
    from raycross import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(path, device="cpu")
    model.model.config.hidden_dropout_prob = 0.0
    for module in model.hf_model.modules():  # deterministic: the curves must match step by step
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if adapter:
        torch.manual_seed(1)
        model.add_adapter({**LORA, "target_modules": targets or LORA["target_modules"]})
        for name, param in model.hf_model.named_parameters():
            if "lora_B" in name:  # non-zero B so the adapter changes the scores from the start
                torch.nn.init.normal_(param, std=0.1)
    return model


def _worker(rank: int, world: int, init_file: str, model_path: str, out: str, mode: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from raycross.training import fsdp

        out_dir = Path(out)
        result: dict = {}
        if mode == "write":
            # DDP reference
            ddp_model = _load(model_path)
            wrapped = torch.nn.parallel.DistributedDataParallel(ddp_model.model)
            result["ddp"], _ = _train(ddp_model, world, rank, wrapped=wrapped)
            # FSDP, same seed and data
            model = _load(model_path)
            fsdp.shard_model(model, torch.device("cpu"))
            result["layers_sharded"] = sum(fsdp.is_sharded(m) for m in fsdp.transformer_layers(model.hf_model))
            result["fsdp"], optimizer = _train(model, world, rank)
            result["eval_state"] = fsdp.full_state_dict(model.hf_model)
            with fsdp.gathered(model.hf_model):  # rank 0 alone scores, the others wait
                if rank == 0:
                    result["scores"] = model.predict(PAIRS, batch_size=3)
                dist.barrier()
            result["after_eval"], _ = _train(model, world, rank, steps=1)  # sharded training goes on
            fsdp.save_sharded(out_dir / f"ckpt-rank{rank}", model.hf_model, optimizer)
            full = fsdp.full_state_dict(model.hf_model)
            optim_full = _full_optimizer(model.hf_model, optimizer)
            if rank == 0:
                torch.save({"model": full, "optim": optim_full}, out_dir / "reference.pt")
            # LoRA + FSDP: only the adapter and the head change; trainable-only checkpoint
            lora = _load(model_path, adapter=True)
            before = {n: p.detach().clone() for n, p in lora.hf_model.named_parameters()}
            fsdp.shard_model(lora, torch.device("cpu"))
            result["lora"], lora_opt = _train(lora, world, rank)
            changed = {n for n, p in lora.hf_model.named_parameters()
                       if not torch.equal(p.detach().full_tensor(), before[n])}
            result["lora_changed"] = sorted(changed)
            fsdp.save_sharded(out_dir / f"lora-rank{rank}", lora.hf_model, lora_opt, trainable_only=True)
            lora_full = fsdp.full_state_dict(lora.hf_model)
            if rank == 0:
                torch.save(lora_full, out_dir / "lora_reference.pt")
            # a decoder reranker (Qwen3): per-layer units, DDP's curve
            qwen = _load(str(Path(model_path).parent / "qwen3"))
            wrapped = torch.nn.parallel.DistributedDataParallel(qwen.model)
            result["qwen_ddp"], _ = _train(qwen, world, rank, steps=2, wrapped=wrapped)
            qwen = _load(str(Path(model_path).parent / "qwen3"))
            fsdp.shard_model(qwen, torch.device("cpu"))
            result["qwen_layers_sharded"] = sum(fsdp.is_sharded(m) for m in fsdp.transformer_layers(qwen.hf_model))
            result["qwen_fsdp"], _ = _train(qwen, world, rank, steps=2)
            # a causal reranker (LogitScore) with LoRA: DDP vs FSDP through CrossEncoder.forward
            causal_path = str(Path(model_path).parent / "causal")
            causal = _load(causal_path, adapter=True, targets=["q_proj", "v_proj"])
            causal.wrap_for_training("ddp")
            result["causal_ddp"], _ = _train(causal, world, rank, steps=2, scores=True)
            causal = _load(causal_path, adapter=True, targets=["q_proj", "v_proj"])
            fsdp.shard_model(causal, torch.device("cpu"))
            result["causal_fsdp"], _ = _train(causal, world, rank, steps=2, scores=True)
            # a Transformer + Pooling + Dense chain (sentence-transformers module model): the head trains too
            chain_path = str(Path(model_path).parent / "chain")
            chain = _load(chain_path)
            chain.wrap_for_training("ddp")
            result["chain_ddp"], _ = _train(chain, world, rank, steps=2, scores=True)
            chain = _load(chain_path)
            fsdp.shard_model(chain, torch.device("cpu"))
            result["chain_layers_sharded"] = sum(fsdp.is_sharded(m) for m in fsdp.transformer_layers(chain.hf_model))
            result["chain_fsdp"], _ = _train(chain, world, rank, steps=2, scores=True)
            # activation checkpointing + bf16 mixed precision
            ac = _load(model_path)
            ac.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            fsdp.shard_model(ac, torch.device("cpu"), bf16=True)
            result["bf16_ac"], _ = _train(ac, world, rank, steps=2)
        else:  # "read": load the 2-worker checkpoint on this world size
            model = _load(model_path)
            fsdp.shard_model(model, torch.device("cpu"))
            _, optimizer = _train(model, world, rank, steps=1)  # a stepped optimizer, overwritten by the load
            fsdp.load_sharded(Path(out) / "merged", model.hf_model, optimizer)
            full = fsdp.full_state_dict(model.hf_model)
            optim_full = _full_optimizer(model.hf_model, optimizer)
            if rank == 0:
                torch.save({"model": full, "optim": optim_full}, out_dir / f"loaded-{world}.pt")
        torch.save(result, out_dir / f"{mode}-{world}-rank{rank}.pt")
        dist.barrier()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # no destroy_process_group(): gloo's teardown can hang in one rank once the other has exited


def _full_optimizer(hf_model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(hf_model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                   cpu_offload=True))
    return state.get("state", {})


def _spawn(tmp_path: Path, world: int, model_path: Path, mode: str) -> None:
    init_file = tmp_path / f"pg-{mode}-{world}"
    mp.spawn(_worker, args=(world, str(init_file), str(model_path), str(tmp_path), mode), nprocs=world, join=True)


def _merge_rank_dirs(tmp_path: Path, prefix: str, world: int, target: str) -> Path:
    """What Ray Train does with the workers' checkpoint directories: one directory with every file."""
    merged = tmp_path / target / "sharded"
    merged.mkdir(parents=True)
    for rank in range(world):
        for file in (tmp_path / f"{prefix}-rank{rank}" / "sharded").iterdir():
            os.link(file, merged / file.name)
    return merged.parent


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    from tests.conftest import make_tiny_causal_model, make_tiny_decoder, make_tiny_model
    from tests.unit.test_st_module_chains import build_chain

    root = tmp_path_factory.mktemp("fsdp")
    model_path = make_tiny_model(root / "model", num_layers=3, seed=0)
    make_tiny_decoder(root / "qwen3", "qwen3")
    make_tiny_causal_model(root / "causal", arch="qwen3")
    build_chain("bert_cls_two_dense", make_tiny_model(root / "encoder", encoder_only=True, num_layers=3), root / "chain")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    _spawn(root, 2, model_path, "write")
    _merge_rank_dirs(root, "ckpt", 2, "merged")
    _merge_rank_dirs(root, "lora", 2, "lora-merged")
    return root, model_path, [torch.load(root / f"write-2-rank{r}.pt", weights_only=False) for r in range(2)]


def test_fsdp_loss_curve_equals_ddp_and_every_layer_is_sharded(fsdp_run):
    _, _, results = fsdp_run
    assert results[0]["layers_sharded"] == 3
    ddp, sharded = results[0]["ddp"], results[0]["fsdp"]
    assert len(ddp) == STEPS and ddp[0] != ddp[-1]  # the loss moves
    assert sharded == pytest.approx(ddp, abs=1e-5), (sharded, ddp)


def test_fsdp_shards_a_qwen3_reranker_per_layer_and_follows_ddp(fsdp_run):
    _, _, results = fsdp_run
    assert results[0]["qwen_layers_sharded"] == 2
    assert results[0]["qwen_fsdp"] == pytest.approx(results[0]["qwen_ddp"], abs=1e-5)


def test_fsdp_shards_a_pooled_module_chain_per_layer_and_follows_ddp(fsdp_run):
    _, _, results = fsdp_run
    assert results[0]["chain_layers_sharded"] == 3
    ddp = results[0]["chain_ddp"]
    assert ddp[0] != ddp[-1]
    assert results[0]["chain_fsdp"] == pytest.approx(ddp, abs=1e-5)


def test_fsdp_with_lora_on_a_causal_reranker_follows_ddp(fsdp_run):
    _, _, results = fsdp_run
    assert results[0]["causal_fsdp"] == pytest.approx(results[0]["causal_ddp"], abs=1e-5)
    assert results[0]["causal_fsdp"][0] != results[0]["causal_fsdp"][1]


def test_gathered_evaluation_on_rank_0_scores_as_the_unsharded_model(fsdp_run):
    _, model_path, results = fsdp_run
    plain = _load(str(model_path))
    plain.hf_model.load_state_dict(results[0]["eval_state"])
    expected = plain.predict(PAIRS, batch_size=3)
    assert results[0]["scores"] == pytest.approx(expected, abs=1e-6)
    assert len(results[0]["after_eval"]) == 1  # sharded training went on after the gathered evaluation


def test_two_worker_checkpoint_loads_on_one_and_three_workers(fsdp_run):
    root, model_path, _ = fsdp_run
    reference = torch.load(root / "reference.pt", weights_only=False)
    for world in (1, 3):
        _spawn(root, world, model_path, "read")
        loaded = torch.load(root / f"loaded-{world}.pt", weights_only=False)
        assert loaded["model"].keys() == reference["model"].keys()
        for key, value in reference["model"].items():
            assert torch.equal(loaded["model"][key], value), (world, key)
        assert loaded["optim"].keys() == reference["optim"].keys()
        for key, state in reference["optim"].items():
            for name in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(loaded["optim"][key][name], state[name]), (world, key, name)


def test_sharded_checkpoint_loads_into_an_unsharded_model_for_export(fsdp_run):
    from raycross.training import fsdp

    root, model_path, _ = fsdp_run
    reference = torch.load(root / "reference.pt", weights_only=False)
    model = _load(str(model_path))
    assert fsdp.is_sharded_checkpoint(root / "merged")
    fsdp.load_full_state(model.hf_model, root / "merged")
    state = model.hf_model.state_dict()
    for key, value in reference["model"].items():
        assert torch.equal(state[key], value), key


def test_fsdp_with_lora_trains_adapter_and_head_only_and_exports(fsdp_run):
    from raycross.training import fsdp

    root, model_path, results = fsdp_run
    changed = results[0]["lora_changed"]
    assert changed and all("lora_" in n or n.startswith("classifier.") for n in changed), changed
    assert any(n.startswith("classifier.") for n in changed) and any("lora_A" in n for n in changed)
    assert results[0]["lora"][0] != results[0]["lora"][-1]
    # the trainable-only checkpoint holds no base weights; loaded onto the base + adapter it reproduces
    # the trained model exactly
    reference = torch.load(root / "lora_reference.pt", weights_only=False)
    model = _load(str(model_path), adapter=True)
    fsdp.load_full_state(model.hf_model, root / "lora-merged")
    state = model.hf_model.state_dict()
    for key, value in reference.items():
        assert torch.equal(state[key], value), key
    metadata = fsdp._read_metadata(root / "lora-merged" / "sharded").state_dict_metadata
    saved_model_keys = [k for k in metadata if k.startswith("model.")]
    assert saved_model_keys and all("lora_" in k or ".classifier." in k or k.startswith("model.classifier")
                                    for k in saved_model_keys), saved_model_keys[:5]


def test_bf16_mixed_precision_with_activation_checkpointing_trains(fsdp_run):
    _, _, results = fsdp_run
    losses = results[0]["bf16_ac"]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    # bf16 compute follows the fp32 curve closely on the first step (same weights, same batch)
    assert losses[0] == pytest.approx(results[0]["fsdp"][0], abs=0.05)
