"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for a CrossEncoder: per-layer sharding, bf16 mixed
precision, gathered evaluation, and sharded checkpoints with ``torch.distributed.checkpoint`` (DCP).

Every transformer layer is its own FSDP unit (its parameters are all-gathered just before it runs and
freed after), the rest (embeddings, head) belongs to the root unit. Works with gloo on CPU and NCCL on GPU.

A checkpoint holds ``sharded/``: one ``__<rank>_0.distcp`` file per worker plus ``.metadata`` (rank 0).
DCP reshards on load, so a checkpoint written by N workers resumes on M workers, and
:func:`load_full_state` reads it into an ordinary (unsharded) model in a single process: the final export.
With an adapter only the trainable parameters (adapter + head) and their optimizer state are stored.

Example (inside a worker, after ``torch.distributed`` is initialized):
    >>> shard_model(model, device=torch.device("cpu"), bf16=False)  # doctest: +SKIP
    >>> save_sharded(Path("ckpt"), model.hf_model, optimizer)  # doctest: +SKIP
    >>> load_sharded(Path("ckpt"), model.hf_model, optimizer)  # on any number of workers  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raycross.causal import is_fsdp_sharded as is_sharded
from raycross.parallel import ParallelWrapper

logger = logging.getLogger(__name__)

SHARDED_DIR = "sharded"
_METADATA = ".metadata"
# where the repeated transformer blocks live, per architecture family (first match wins)
LAYER_PATHS = (
    "bert.encoder.layer", "roberta.encoder.layer", "xlm_roberta.encoder.layer", "electra.encoder.layer",
    "deberta.encoder.layer", "encoder.layer", "model.layers", "transformer.h", "model.decoder.layers",
    "encoder.encoder.layer", "encoder.layers",  # a Transformer + Pooling + Dense chain (raycross.pooled_scorer)
)


def fsdp_api() -> Any:
    """The FSDP2 module (``torch.distributed.fsdp``), or an ImportError naming the torch version needed."""
    try:
        from torch.distributed import fsdp

        fsdp.fully_shard  # noqa: B018  (public since torch 2.6)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"parallel_strategy='fsdp' needs torch>=2.6 (FSDP2 fully_shard), found {torch.__version__}") from exc
    return fsdp


def transformer_layers(hf_model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks of `hf_model` (BERT/RoBERTa/XLM-R encoders, Llama/Qwen/Mistral
    decoders, GPT-style ``transformer.h``); else the longest ModuleList of same-class blocks.

    Example:
        >>> len(transformer_layers(model.hf_model))  # doctest: +SKIP
        12
    """
    for path in LAYER_PATHS:
        try:
            layers = hf_model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList) and len(layers):
            return list(layers)
    best: list[nn.Module] = []
    for module in hf_model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best) and len({type(m) for m in module}) == 1:
            best = list(module)
    return best


def shard_model(model: Any, device: torch.device, bf16: bool = False, reshard_after_forward: bool = True) -> None:
    """Move `model` (a CrossEncoder) to `device` and shard its transformers model with FSDP2 in place
    (``model.wrap_for_training("fsdp")``, see :class:`FSDPWrapper`).
    """
    model.to(device)
    model.wrap_for_training("fsdp", bf16=bf16, reshard_after_forward=reshard_after_forward)


class FSDPWrapper(ParallelWrapper):
    """The ``fsdp`` kind of :meth:`CrossEncoder.wrap_for_training`: FSDP2 in place (no wrapper module).

    Each transformer layer, then the root, is sharded with ``fully_shard``; with `bf16`, parameters are
    all-gathered and computed in bfloat16 while gradients are reduced and the optimizer updates in float32.
    Forward passes are the plain transformers forward (FSDP2 all-gathers through the root's hooks).
    """

    kind = "fsdp"

    def __init__(self, hf_model: nn.Module, bf16: bool = False, reshard_after_forward: bool = True) -> None:
        self.hf_model = hf_model
        self.module = hf_model
        self._sync = True
        _shard(hf_model, bf16, reshard_after_forward)

    def run(self, fn: Any, features: Any) -> torch.Tensor:
        return fn(self.hf_model, features)  # sharded in place: the root's hooks gather (no padding-free path)

    @contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """Reduce-scatter gradients in backward passes inside (``enabled``) or accumulate them locally; an
        enclosing ``gradient_sync(False)`` wins (as DDP's nested ``no_sync``)."""
        previous = self._sync
        self._sync = previous and enabled
        set_gradient_sync(self.hf_model, self._sync)
        try:
            yield
        finally:
            self._sync = previous
            set_gradient_sync(self.hf_model, previous)

    def train(self, mode: bool) -> None:
        pass  # the CrossEncoder's train() already reached the (in place) sharded transformer


def _shard(hf_model: nn.Module, bf16: bool, reshard_after_forward: bool) -> None:
    fsdp = fsdp_api()
    from torch.distributed.device_mesh import init_device_mesh

    device = next(hf_model.parameters()).device
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = fsdp.MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else fsdp.MixedPrecisionPolicy()
    layers = transformer_layers(hf_model)
    if not layers:
        logger.warning("no transformer layers found in %s: sharding it as one FSDP unit", type(hf_model).__name__)
    for layer in layers:
        fsdp.fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fsdp.fully_shard(hf_model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)


def set_gradient_sync(hf_model: nn.Module, enabled: bool) -> None:
    """Reduce-scatter gradients on this backward (True) or accumulate them locally (False: not the last
    micro-batch of a gradient-accumulation group)."""
    hf_model.set_requires_gradient_sync(enabled)


@contextmanager
def gathered(hf_model: nn.Module) -> Iterator[None]:
    """All workers gather the full parameters once; inside, each worker may run any number of forward
    passes on its own (e.g. rank 0 alone evaluates) without collectives; on exit they are sharded again.

    Every worker must enter and leave together. Memory: the full model on each worker meanwhile.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in hf_model.modules() if isinstance(m, FSDPModule)]
    hf_model.set_reshard_after_forward(False)
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        hf_model.set_reshard_after_forward(True)


def _trainable_names(hf_model: nn.Module) -> set[str]:
    return {name for name, param in hf_model.named_parameters() if param.requires_grad}


def _state(hf_model: nn.Module, optimizer: torch.optim.Optimizer | None, trainable_only: bool) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_state = get_model_state_dict(hf_model)
    if trainable_only:
        keep = _trainable_names(hf_model)
        model_state = {k: v for k, v in model_state.items() if k in keep}
    state: dict[str, Any] = {"model": model_state}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(hf_model, optimizer)
    return state


def save_sharded(directory: Path, hf_model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 trainable_only: bool = False) -> None:
    """Every worker writes its shards of the model (and optimizer) state into ``directory/sharded``;
    rank 0 also writes the metadata. Collective: all workers call it with their own `directory`."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_state(hf_model, optimizer, trainable_only), checkpoint_id=str(Path(directory) / SHARDED_DIR))


def load_sharded(directory: Path, hf_model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 trainable_only: bool = False) -> None:
    """Load a sharded checkpoint written by any number of workers into this (sharded) model and optimizer.
    Collective. Without optimizer state in the checkpoint, the optimizer keeps its fresh state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    path = Path(directory) / SHARDED_DIR
    saved = set(_read_metadata(path).state_dict_metadata)
    has_optimizer = any(key.startswith("optimizer.") for key in saved)
    state = _state(hf_model, optimizer if has_optimizer else None, trainable_only)
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(hf_model, state["model"], options=StateDictOptions(strict=not trainable_only))
    if "optimizer" in state:
        set_optimizer_state_dict(hf_model, optimizer, state["optimizer"])
    elif optimizer is not None:
        logger.warning("checkpoint %s has no optimizer state (save_only_model=True): fresh optimizer", directory)


def is_sharded_checkpoint(directory: str | Path) -> bool:
    """True when `directory` holds a DCP sharded checkpoint (``sharded/.metadata``)."""
    return (Path(directory) / SHARDED_DIR / _METADATA).is_file()


def _read_metadata(path: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader(str(path)).read_metadata()


def load_full_state(hf_model: nn.Module, directory: str | Path) -> None:
    """Read a sharded checkpoint's model weights into an ordinary, unsharded `hf_model` in this process
    (no process group needed): DCP gathers every worker's shards. Used for the final export.

    Example:
        >>> load_full_state(model.hf_model, "run/checkpoint-100")  # doctest: +SKIP
    """
    import torch.distributed.checkpoint as dcp

    path = Path(directory) / SHARDED_DIR
    saved = {k[len("model."):] for k in _read_metadata(path).state_dict_metadata if k.startswith("model.")}
    current = hf_model.state_dict()
    missing = sorted(saved - set(current))
    if missing:
        raise ValueError(f"sharded checkpoint {directory} does not match the model: unexpected {missing[:5]}")
    state = {"model": {k: v for k, v in current.items() if k in saved}}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*load in a single process.*")
        dcp.load(state, checkpoint_id=str(path), no_dist=True)
    hf_model.load_state_dict(state["model"], strict=False)


def full_state_dict(hf_model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict on rank 0's CPU, empty on the other ranks. Collective.

    Example:
        >>> state = full_state_dict(model.hf_model)  # doctest: +SKIP
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(hf_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
