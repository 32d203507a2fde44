"""CrossEncoderTrainingArguments: the knobs of a training run (names and defaults of sentence-transformers).

Beyond the sentence-transformers/transformers arguments there are the Ray ones: ``num_workers``
(0 = train in this process), ``use_gpu``, ``resources_per_worker``, ``storage_path``, ``max_failures``.

Example:
    >>> args = CrossEncoderTrainingArguments("out", num_train_epochs=1, eval_strategy="steps", eval_steps=0.1)
    >>> args.resolve_steps(args.eval_steps, max_steps=200)
    20
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class _StrEnum(str, Enum):
    """A str enum that prints as its value and lists its valid values in errors."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls, value: Any, argument: str) -> _StrEnum:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(getattr(value, "value", value)).lower())
        except ValueError:
            raise ValueError(
                f"{argument}: expected one of {[m.value for m in cls]}, found {value!r}"
            ) from None


class BatchSamplers(_StrEnum):
    """How the rows of one dataset are grouped into batches.

    - ``BATCH_SAMPLER``: shuffled rows cut into batches (default).
    - ``NO_DUPLICATES``: no text appears twice in a batch (for in-batch negatives losses).
    - ``GROUP_BY_LABEL``: every batch holds at least 2 labels with at least 2 rows each.

    Example:
        >>> BatchSamplers("no_duplicates") is BatchSamplers.NO_DUPLICATES
        True
    """

    BATCH_SAMPLER = "batch_sampler"
    NO_DUPLICATES = "no_duplicates"
    GROUP_BY_LABEL = "group_by_label"


class MultiDatasetBatchSamplers(_StrEnum):
    """In which order the datasets of a multi-dataset run take their turns (each batch from one dataset).

    - ``PROPORTIONAL``: every batch of every dataset is used once per epoch, in a seeded random order,
      so datasets are sampled in proportion to their size (default).
    - ``ROUND_ROBIN``: datasets take turns until the one with the fewest batches is exhausted.

    Example:
        >>> MultiDatasetBatchSamplers("round_robin").value
        'round_robin'
    """

    ROUND_ROBIN = "round_robin"
    PROPORTIONAL = "proportional"


class IntervalStrategy(_StrEnum):
    """When to evaluate, save or log: never, every ``*_steps`` optimizer steps, or at each epoch end."""

    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"


class SchedulerType(_StrEnum):
    """Learning-rate schedules: every transformers ``SchedulerType`` (built by ``transformers.get_scheduler``).

    Example:
        >>> SchedulerType("cosine_with_restarts").value
        'cosine_with_restarts'
    """

    LINEAR = "linear"
    COSINE = "cosine"
    COSINE_WITH_RESTARTS = "cosine_with_restarts"
    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    INVERSE_SQRT = "inverse_sqrt"
    REDUCE_ON_PLATEAU = "reduce_lr_on_plateau"
    COSINE_WITH_MIN_LR = "cosine_with_min_lr"
    COSINE_WARMUP_WITH_MIN_LR = "cosine_warmup_with_min_lr"
    WARMUP_STABLE_DECAY = "warmup_stable_decay"
    GREEDY = "greedy"


class HubStrategy(_StrEnum):
    """What ``push_to_hub=True`` uploads and when (transformers' values): ``end`` (the final model),
    ``every_save`` (also the model at every checkpoint), ``checkpoint`` (also the latest checkpoint under
    ``last-checkpoint/``) or ``all_checkpoints`` (every checkpoint in its own folder)."""

    END = "end"
    EVERY_SAVE = "every_save"
    CHECKPOINT = "checkpoint"
    ALL_CHECKPOINTS = "all_checkpoints"


_ENUM_FIELDS = {
    "hub_strategy": HubStrategy,
    "batch_sampler": BatchSamplers,
    "multi_dataset_batch_sampler": MultiDatasetBatchSamplers,
    "eval_strategy": IntervalStrategy,
    "save_strategy": IntervalStrategy,
    "logging_strategy": IntervalStrategy,
    "lr_scheduler_type": SchedulerType,
}


@dataclass
class CrossEncoderTrainingArguments:
    """Arguments of a :class:`~raycross.training.CrossEncoderTrainer` run.

    Step-like arguments (``eval_steps``, ``save_steps``, ``logging_steps``, ``warmup_steps``) count
    optimizer steps; a float in (0, 1) is a fraction of the total number of optimizer steps, as in
    transformers. Batch sizes are per worker: the global batch is ``per_device_train_batch_size *
    max(num_workers, 1) * gradient_accumulation_steps``.

    Ray arguments:
        num_workers: number of Ray Train workers; 0 (default) trains in this process without Ray Train.
        use_gpu: one GPU per worker; ``None`` = use a GPU when the cluster (or this machine) has one.
        resources_per_worker: e.g. ``{"CPU": 2}`` or ``{"CPU": 0.5}``.
        storage_path: where Ray Train keeps checkpoints (a shared path or a URI for multi-node runs);
            default: checkpoints go to ``output_dir/checkpoint-<step>``.
        max_failures: how many times a failed worker group is restarted from the last checkpoint.
        max_workers: elastic training (Ray Train V2): between ``num_workers`` and ``max_workers`` workers, as
            the cluster allows. A run that loses workers continues on fewer from the last checkpoint (needs
            ``max_failures`` > 0) and grows back when capacity returns (checked every
            ``elastic_resize_interval_s`` seconds); see the README for the data position on a new count.
        skip_nonfinite_steps: a step whose loss or gradient norm is NaN/inf is skipped (weights unchanged,
            logged) instead of stopping training with an error naming the step (default).
        shard_eval: split the evaluation data and the evaluator's pairs over the workers.
        ddp_find_unused_parameters: DDP option for models with parameters a loss does not use.
        parallel_strategy: ``"ddp"`` (default: every worker holds the whole model) or ``"fsdp"`` (FSDP2:
            parameters, gradients and optimizer state sharded over the workers, one unit per transformer
            layer; bf16 via a mixed-precision policy; sharded checkpoints that resume on any worker count).

    Adapter arguments: ``lora_config`` (a peft ``LoraConfig`` or a dict of its arguments) adds a LoRA
    adapter before training: only the adapter and the scoring head train, checkpoints hold only them, and
    the final model is adapter-only unless ``merge_adapter=True`` (a plain model with the adapter merged).

    Prompts (as sentence-transformers 6.2): ``prompts`` is one prompt put before every training and eval
    pair, or a dict of dataset name -> prompt; per-column prompts are refused (the columns form pairs).

    Data arguments beyond sentence-transformers: ``prefetch_batches`` (batches gathered and tokenized
    ahead in a background thread; 0 = inline) and ``group_by_length`` (the transformers option: batches
    of rows of similar length, less padding; with ``batch_sampler='batch_sampler'``); ``streaming``
    (``None`` decides per dataset: data files and Ray Datasets larger than about 1 GiB per worker are
    streamed, the rest is held in memory; ``True``/``False`` force it) and ``streaming_window`` (rows a
    streamed dataset holds per worker: the shuffle window, within which the batch sampler works).

    Example:
        >>> args = CrossEncoderTrainingArguments(output_dir="out", num_train_epochs=1, learning_rate=2e-5,
        ...     warmup_ratio=0.1, eval_strategy="steps", eval_steps=100, bf16=False)
        >>> args.eval_strategy
        <IntervalStrategy.STEPS: 'steps'>
    """

    output_dir: str
    # --- schedule
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # --- optimizer
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler_type: SchedulerType | str = "linear"
    lr_scheduler_kwargs: dict[str, Any] | None = None
    optim: str = "adamw_torch_fused"
    optim_args: str | None = None
    learning_rate_mapping: dict[str, float] | None = None
    warmup_ratio: float = 0.0
    warmup_steps: float = 0
    # --- precision and memory
    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    # --- evaluation, saving, logging
    eval_strategy: IntervalStrategy | str = "no"
    eval_steps: float | None = None
    save_strategy: IntervalStrategy | str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_only_model: bool = False
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    logging_strategy: IntervalStrategy | str = "steps"
    logging_steps: float = 500
    logging_first_step: bool = False
    logging_dir: str | None = None
    report_to: str | list[str] | None = "none"
    run_name: str | None = None
    disable_tqdm: bool = False
    # --- hub (uploads through huggingface_hub; see raycross.hub)
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_strategy: HubStrategy | str = "every_save"
    hub_token: str | None = None
    hub_private_repo: bool | None = None
    hub_revision: str | None = None
    # --- data
    seed: int = 42
    batch_sampler: BatchSamplers | str = "batch_sampler"
    multi_dataset_batch_sampler: MultiDatasetBatchSamplers | str = "proportional"
    prompts: str | dict[str, str] | None = None
    dataloader_drop_last: bool = False
    group_by_length: bool = False
    prefetch_batches: int = 2
    streaming: bool | None = None
    streaming_window: int = 16384
    ddp_find_unused_parameters: bool = False
    # --- big models
    parallel_strategy: str = "ddp"
    lora_config: Any = None
    merge_adapter: bool = False
    # --- Ray
    num_workers: int = 0
    use_gpu: bool | None = None
    resources_per_worker: dict[str, float] | None = None
    storage_path: str | None = None
    max_failures: int = 0
    skip_nonfinite_steps: bool = False
    max_workers: int | None = None
    elastic_resize_interval_s: float = 60.0
    shard_eval: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir):
            raise ValueError(f"output_dir: expected a non-empty path, found {self.output_dir!r}")
        self.output_dir = str(self.output_dir)
        for name, enum in _ENUM_FIELDS.items():
            setattr(self, name, enum.parse(getattr(self, name), name))
        self._check_optimizer()
        self._check_positive_ints()
        self._check_numbers()
        self._check_steps()
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16: at most one can be True, found both True")
        self._check_parallel_strategy()
        self.prompts = self._parse_prompts(self.prompts)
        if self.eval_strategy is IntervalStrategy.STEPS and not self.eval_steps:
            # transformers falls back to logging_steps
            self.eval_steps = self.logging_steps
        if self.load_best_model_at_end:
            self._check_best_model_strategies()
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        self.report_to = self._parse_report_to(self.report_to)
        if self.run_name is None:
            self.run_name = Path(self.output_dir).name or "raycross"

    # ------------------------------------------------------------------ checks
    def _check_optimizer(self) -> None:
        from transformers.training_args import OptimizerNames

        names = [m.value for m in OptimizerNames]
        self.optim = str(getattr(self.optim, "value", self.optim))
        if self.optim not in names:
            raise ValueError(f"optim: expected one of transformers' optimizers {names}, found {self.optim!r}")
        if self.lr_scheduler_kwargs is not None and not isinstance(self.lr_scheduler_kwargs, dict):
            raise ValueError(f"lr_scheduler_kwargs: expected a dict, found {self.lr_scheduler_kwargs!r}")
        mapping = self.learning_rate_mapping
        if mapping is not None and not (isinstance(mapping, dict) and all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in mapping.items())):
            raise ValueError(f"learning_rate_mapping: expected a dict of regex -> learning rate, found {mapping!r}")
        for pattern in mapping or {}:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"learning_rate_mapping: {pattern!r} is not a valid regular expression ({exc})") from None

    @staticmethod
    def _parse_prompts(prompts: Any) -> str | dict[str, str] | None:
        """One prompt for every dataset, or dataset name -> prompt (a JSON string of either works too)."""
        if isinstance(prompts, str):
            try:
                prompts = json.loads(prompts)
            except json.JSONDecodeError:
                return prompts
        if prompts is None or isinstance(prompts, str):
            return prompts
        if not isinstance(prompts, dict):
            raise ValueError(f"prompts: expected a string or a dict of dataset name -> prompt, found {prompts!r}")
        for name, value in prompts.items():
            if isinstance(value, dict):
                raise ValueError(
                    f"prompts[{name!r}]: cross-encoder prompts cannot be per column (the columns are joined into "
                    "pairs); give one string, or a dict of dataset name -> prompt string, e.g. "
                    "prompts={'dataset_a': 'Search: ', 'dataset_b': 'Retrieve: '}"
                )
            if not isinstance(value, str):
                raise ValueError(f"prompts[{name!r}]: expected a prompt string, found {type(value).__name__}")
        return dict(prompts)

    def _check_positive_ints(self) -> None:
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, found {value!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers: expected an integer >= 0 (0 = train in this process), found {self.num_workers!r}")
        if self.max_workers is not None and (
            isinstance(self.max_workers, bool) or not isinstance(self.max_workers, int)
            or self.num_workers < 1 or self.max_workers < self.num_workers
        ):
            raise ValueError(f"max_workers: expected an integer >= num_workers >= 1 (elastic workers between "
                             f"num_workers and max_workers), found max_workers={self.max_workers!r} with "
                             f"num_workers={self.num_workers!r}")
        if not self.elastic_resize_interval_s >= 0:
            raise ValueError(f"elastic_resize_interval_s: expected >= 0, found {self.elastic_resize_interval_s!r}")
        if not isinstance(self.skip_nonfinite_steps, bool):
            raise ValueError(f"skip_nonfinite_steps: expected True or False, found {self.skip_nonfinite_steps!r}")
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"max_failures: expected an integer >= 0 (or -1 for unlimited), found {self.max_failures!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps: expected a positive integer or -1 (use num_train_epochs), found {self.max_steps!r}")
        if self.save_total_limit is not None and (not isinstance(self.save_total_limit, int) or self.save_total_limit < 1):
            raise ValueError(f"save_total_limit: expected None or an integer >= 1, found {self.save_total_limit!r}")
        if isinstance(self.streaming_window, bool) or not isinstance(self.streaming_window, int) or self.streaming_window < 1:
            raise ValueError(f"streaming_window: expected an integer >= 1 (rows), found {self.streaming_window!r}")
        if self.streaming is not None and not isinstance(self.streaming, bool):
            raise ValueError(f"streaming: expected True, False or None (decide per dataset), found {self.streaming!r}")
        if not isinstance(self.prefetch_batches, int) or self.prefetch_batches < 0:
            raise ValueError(f"prefetch_batches: expected an integer >= 0, found {self.prefetch_batches!r}")
        if self.batch_sampler is BatchSamplers.GROUP_BY_LABEL and (
            self.per_device_train_batch_size < 4 or self.per_device_train_batch_size % 2
        ):
            raise ValueError(
                "per_device_train_batch_size: batch_sampler='group_by_label' needs an even batch size >= 4 "
                f"(2 rows of at least 2 labels per batch), found {self.per_device_train_batch_size}"
            )
        if self.group_by_length and self.batch_sampler is not BatchSamplers.BATCH_SAMPLER:
            raise ValueError(
                f"group_by_length=True works with batch_sampler='batch_sampler' only, found {self.batch_sampler.value!r}"
            )
        if self.resources_per_worker is not None and not (
            isinstance(self.resources_per_worker, dict)
            and all(isinstance(v, (int, float)) and v >= 0 for v in self.resources_per_worker.values())
        ):
            raise ValueError(
                f"resources_per_worker: expected a dict like {{'CPU': 1, 'GPU': 1}}, found {self.resources_per_worker!r}"
            )

    def _check_parallel_strategy(self) -> None:
        if self.parallel_strategy not in ("ddp", "fsdp"):
            raise ValueError(f"parallel_strategy: expected 'ddp' or 'fsdp', found {self.parallel_strategy!r}")
        if self.parallel_strategy == "fsdp" and self.num_workers == 0:
            raise ValueError(
                "parallel_strategy: 'fsdp' shards the model over Ray Train workers and needs num_workers >= 1, "
                "found num_workers=0 (in-process training)"
            )
        if self.parallel_strategy == "fsdp" and self.fp16:
            raise ValueError("parallel_strategy: 'fsdp' supports bf16 mixed precision, not fp16: use bf16=True, "
                             "found fp16=True")
        if self.lora_config is not None and not isinstance(self.lora_config, dict) \
                and type(self.lora_config).__name__ != "LoraConfig" and not hasattr(self.lora_config, "peft_type"):
            raise TypeError(f"lora_config: expected a peft LoraConfig or a dict of its arguments, "
                            f"found {type(self.lora_config).__name__}")
        if self.merge_adapter and self.lora_config is None:
            logger.debug("merge_adapter=True without lora_config: applies only to a model that has an adapter")

    def _check_numbers(self) -> None:
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ValueError(f"num_train_epochs: expected > 0 when max_steps=-1, found {self.num_train_epochs!r}")
        if not self.learning_rate >= 0:
            raise ValueError(f"learning_rate: expected >= 0, found {self.learning_rate!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio: expected a fraction in [0, 1), found {self.warmup_ratio!r}")
        if self.warmup_steps < 0 or (self.warmup_steps >= 1 and self.warmup_steps != int(self.warmup_steps)):
            raise ValueError(
                f"warmup_steps: expected an integer >= 0 or a fraction in (0, 1), found {self.warmup_steps!r}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, found {self.weight_decay!r}")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm: expected >= 0 (0 disables clipping), found {self.max_grad_norm!r}")

    def _check_steps(self) -> None:
        for name, strategy in (("eval_steps", self.eval_strategy), ("save_steps", self.save_strategy),
                               ("logging_steps", self.logging_strategy)):
            value = getattr(self, name)
            if strategy is not IntervalStrategy.STEPS or value is None:
                continue
            if value < 0 or (value == 0 and name != "eval_steps"):
                raise ValueError(f"{name}: expected > 0 with {name.split('_')[0]}_strategy='steps', found {value!r}")
            if value > 1:
                if value != int(value):
                    raise ValueError(f"{name}: expected an integer when > 1 (or a fraction in (0, 1)), found {value!r}")
                setattr(self, name, int(value))

    def _check_best_model_strategies(self) -> None:
        if self.eval_strategy is IntervalStrategy.NO:
            raise ValueError(
                "load_best_model_at_end=True needs evaluations: set eval_strategy to 'steps' or 'epoch' (found 'no')"
            )
        if self.save_strategy != self.eval_strategy:
            raise ValueError(
                "load_best_model_at_end=True needs save_strategy to match eval_strategy, found "
                f"eval_strategy={self.eval_strategy.value!r} and save_strategy={self.save_strategy.value!r}"
            )
        if self.eval_strategy is IntervalStrategy.STEPS:
            eval_steps = self.eval_steps or self.logging_steps
            if (eval_steps < 1) != (self.save_steps < 1):
                raise ValueError(
                    "load_best_model_at_end=True needs save_steps to be a multiple of eval_steps, which cannot be "
                    f"guaranteed when mixing a fraction and a step count: save_steps={self.save_steps}, "
                    f"eval_steps={eval_steps}"
                )
            if round(self.save_steps * 10**6) % round(eval_steps * 10**6) != 0:
                raise ValueError(
                    "load_best_model_at_end=True needs save_steps to be a multiple of eval_steps, found "
                    f"save_steps={self.save_steps} and eval_steps={eval_steps}"
                )

    @staticmethod
    def _parse_report_to(value: Any) -> list[str]:
        """``"none"``/None -> [], ``"all"`` -> every supported integration that is installed."""
        from raycross.training.reporting import INTEGRATIONS, installed_integrations

        if value is None or value == "none" or value == ["none"]:
            return []
        values = [value] if isinstance(value, str) else list(value)
        if "all" in values:
            values = installed_integrations()
        unknown = [v for v in values if v not in INTEGRATIONS]
        if unknown:
            raise ValueError(f"report_to: supported integrations are {[*INTEGRATIONS, 'all', 'none']}, found {unknown}")
        return values

    # ------------------------------------------------------------------ derived values
    @property
    def world_size(self) -> int:
        """Number of data-parallel processes (1 in-process)."""
        return max(self.num_workers, 1)

    @property
    def train_batch_size(self) -> int:
        """Rows per optimizer step over all workers."""
        return self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps

    @staticmethod
    def resolve_steps(value: float | None, max_steps: int) -> int | None:
        """An interval in optimizer steps: a fraction in (0, 1) of ``max_steps`` is rounded up.

        Example:
            >>> CrossEncoderTrainingArguments.resolve_steps(0.25, max_steps=10)
            3
        """
        if value is None or value <= 0:
            return None
        if value < 1:
            return max(1, math.ceil(max_steps * value))
        return int(value)

    def get_warmup_steps(self, max_steps: int) -> int:
        """Warmup steps: ``warmup_steps`` (count or fraction) wins over ``warmup_ratio`` when set.

        Example:
            >>> CrossEncoderTrainingArguments("o", warmup_ratio=0.1).get_warmup_steps(95)
            10
        """
        if self.warmup_steps and self.warmup_steps > 0:
            return int(self.warmup_steps) if self.warmup_steps >= 1 else math.ceil(max_steps * self.warmup_steps)
        return math.ceil(max_steps * self.warmup_ratio)

    def to_dict(self) -> dict[str, Any]:
        """All arguments as JSON-friendly values (enums as strings)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "lora_config" and value is not None and not isinstance(value, dict):
                value = {k: (sorted(v) if isinstance(v, set) else v) for k, v in value.to_dict().items()}
            out[f.name] = value.value if isinstance(value, Enum) else value
        if out.get("hub_token"):  # never written to training_args.json or a model card
            out["hub_token"] = "<HUB_TOKEN>"
        return out

    def non_default_dict(self) -> dict[str, Any]:
        """The arguments that differ from their defaults (for the model card)."""
        defaults = asdict(CrossEncoderTrainingArguments(output_dir=self.output_dir))
        defaults = {k: (v.value if isinstance(v, Enum) else v) for k, v in defaults.items()}
        return {k: v for k, v in self.to_dict().items() if defaults.get(k) != v and k != "output_dir"}
