"""The per-worker training loop, the same code in this process (``num_workers=0``) and on every Ray Train
worker; only the :mod:`~raycross.training.runtime` differs.

One optimizer step, top to bottom (:meth:`TrainingLoop.train`):

1. the epoch's plan (:class:`~raycross.training.epoch_plan.EpochPlan`): which dataset each micro-step draws
   from (seeded, equal on all workers) and which global batch of it each worker takes; an in-memory
   dataset's batches of row indices are cut from the whole dataset (:func:`fixed_epoch_batches`), a
   streamed one's come from the worker's shard;
2. a background thread gathers the texts and labels of the next batches, asks each batch's loss which
   pairs it scores (``loss.plan(inputs)``) and tokenizes exactly those ahead (:class:`BatchStream`);
3. ``loss(batch.plan, labels)`` under autocast, divided by the accumulation count, ``backward`` inside
   ``model.gradient_sync(last micro-batch of the group)`` (the model's parallel wrapper, DDP, syncs
   gradients on the group's last micro-batch only);
4. unscale (fp16), clip (grad norm), ``optimizer.step``, ``scheduler.step``, ``zero_grad``;
5. callbacks, then logging / evaluation / checkpointing on schedule (:meth:`TrainingLoop._after_step`).

Example (what the driver does for ``num_workers=0``):
    >>> output = run_training(job, LocalRuntime(tables, {}, "out"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import TrainerControl, TrainerState

from raycross.losses._plan import call_loss
from raycross.prompts import dataset_prompt
from raycross.training.arguments import BatchSamplers, CrossEncoderTrainingArguments, IntervalStrategy
from raycross.training.batches import Batch, BatchStream, batch_seed, epoch_step_plan
from raycross.training.callbacks import CallbackHandler, LogCallback, ProgressCallback
from raycross.training.checkpoints import (
    CHECKPOINT_SCORE,
    OPTIMIZER,
    SCALER,
    SCHEDULER,
    TRAINER_STATE,
    TRAINING_ARGS,
    capture_rng,
    file_sizes,
    load_scheduler_state,
    load_state,
    save_state,
    scheduler_state,
    verify_checkpoint,
    checkpoint_score,
    load_model_weights,
    restore_rng,
    rng_file,
    write_json,
)
from raycross.training import fsdp
from raycross.training.epoch_plan import EpochPlan
from raycross.training.evaluate import autocast_for, evaluate_model
from raycross.training.export import raise_if_no_space
from raycross.training.progress import Progress
from raycross.training.optim import build_optimizer, create_scheduler
from raycross.training.samplers import (
    ShardSampler,
    dataset_schedule,
    fixed_epoch_batches,
    steps_per_epoch,
    updates_per_epoch,
)
from raycross.training.streaming import WindowedBatches, nominal_batches
from raycross.training.tables import Shard
from raycross.data import DatasetSpec
from raycross.training.validation import check_dataset_rows, dataset_label

logger = logging.getLogger(__name__)


@dataclass
class TrainJob:
    """Everything a worker needs, built and checked on the driver, shipped to the workers (pickled)."""

    model: Any
    args: CrossEncoderTrainingArguments
    train_specs: dict[str, DatasetSpec]
    losses: dict[str, nn.Module]
    eval_specs: dict[str, DatasetSpec] = field(default_factory=dict)
    eval_losses: dict[str, nn.Module] = field(default_factory=dict)
    evaluator: Any = None
    callbacks: list[Any] = field(default_factory=list)
    single_eval: bool = True
    metric_key: str | None = None
    show_progress: bool = True
    resume_from: str | None = None
    # optimizer choice beyond args.optim: a class and its kwargs (any run), or ready objects (in-process only)
    optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None
    optimizers: tuple[Any, Any] = (None, None)
    compute_metrics: Any = None
    streamed: dict[str, int] = field(default_factory=dict)  # streamed training datasets: name -> total rows


@dataclass
class LoopOutput:
    """What one worker's loop ends with (rank 0's is the run's)."""

    state: TrainerState
    last_checkpoint: str | None
    metrics: dict[str, float]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point of a Ray Train worker.

    Example:
        >>> TorchTrainer(train_loop_per_worker, train_loop_config={"job": job}, ...).fit()  # doctest: +SKIP
    """
    from raycross.training.runtime import RayRuntime

    job = config["job"]
    run_training(job, RayRuntime(resume_from=job.resume_from, tables=config.get("tables")))


def run_training(job: TrainJob, runtime: Any) -> LoopOutput:
    """Train `job.model` with `runtime` (shards, collectives, checkpoints); returns the final state."""
    return TrainingLoop(job, runtime).train()


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (same seed on every worker, as transformers does).

    Example:
        >>> set_seed(42)
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class TrainingLoop:
    """State of one worker's run (model, shards, samplers, optimizer, trainer state); :meth:`train` is the loop.

    Example:
        >>> output = TrainingLoop(job, LocalRuntime(tables, {}, "out")).train()  # doctest: +SKIP
    """

    def __init__(self, job: TrainJob, runtime: Any) -> None:
        self.job = job
        self.rt = runtime
        self.args: CrossEncoderTrainingArguments = job.args
        self.model = job.model
        self.is_main = runtime.rank == 0
        set_seed(self.args.seed)
        self._setup_model()
        self._setup_data()
        self._setup_schedule()
        self._setup_optimizer()
        self.state = TrainerState(
            max_steps=self.max_steps, num_train_epochs=self.num_epochs,
            logging_steps=self.logging_every or 0, eval_steps=self.eval_every or 0, save_steps=self.save_every or 0,
            train_batch_size=self.args.per_device_train_batch_size, is_world_process_zero=self.is_main,
            is_local_process_zero=self.is_main,
        )
        self.control = TrainerControl()
        self.position = (0, 0)  # (epoch index, next micro-step of that epoch's plan)
        # the rest of the epoch a resume continues on another worker count than the checkpoint's (else None)
        self.resumed_plan: EpochPlan | None = None
        self.resumed_epoch = -1
        self.plan_offset = 0  # micro-steps of the epoch before the resumed plan's first one
        self._plan_cache: tuple[int, EpochPlan] | None = None
        self.last_eval_metrics: dict[str, float] = {}
        self.last_eval_step = -1
        self.last_save_step = -1
        self.last_checkpoint: str | None = None
        self.finished = False
        self._resume()
        self.handler = CallbackHandler(self._callbacks(), model=self.model, optimizer=self.optimizer,
                                       lr_scheduler=self.scheduler, processing_class=self.model.tokenizer,
                                       train_dataloader=None, eval_dataloader=None)
        self.control = self.handler.call("on_init_end", self.args, self.state, self.control)

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        model, args = self.model, self.args
        if args.gradient_checkpointing:
            hf = model.hf_model
            if hasattr(hf, "activation_checkpointing_enable"):  # transformers >= 5.x name
                hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.rt.prepare_model(model, find_unused_parameters=args.ddp_find_unused_parameters,
                              parallel_strategy=args.parallel_strategy, bf16=args.bf16)
        for loss in {id(l): l for l in [*self.job.losses.values(), *self.job.eval_losses.values()]}.values():
            loss.to(self.rt.device)
        model.train()
        self.sharded = fsdp.is_sharded(model.hf_model)

    def _setup_data(self) -> None:
        args = self.args
        self.names = list(self.job.train_specs)
        self.shards: dict[str, Shard] = {}
        self.samplers: dict[str, ShardSampler] = {}
        self.streams: dict[str, WindowedBatches] = {}
        natural: dict[str, int] = {}
        for index, (name, spec) in enumerate(self.job.train_specs.items()):
            if name in self.job.streamed:
                self.streams[name], natural[name] = self._stream(index, name, spec)
                continue
            # every worker holds the whole dataset (zero-copy on Ray) and cuts the same global batches from it
            table = self.rt.train_table(name, spec.columns)
            self._check_rows(spec, self.job.losses[name], table)
            shard = Shard(table, spec.input_columns, spec.label_column)
            if shard.num_rows == 0:
                raise ValueError(f"train_dataset {name!r} has no rows")
            self.shards[name] = shard
            self.samplers[name] = ShardSampler(
                args.batch_sampler, shard.num_rows, args.per_device_train_batch_size, args.seed,
                drop_last=args.dataloader_drop_last,
                text_ids=shard.text_ids() if args.batch_sampler is BatchSamplers.NO_DUPLICATES else None,
                labels=shard.label_array() if args.batch_sampler is BatchSamplers.GROUP_BY_LABEL else None,
                stream=(index, 0), lengths=shard.text_lengths() if args.group_by_length else None,
            )
            natural[name] = self.samplers[name].natural_num_batches()
        # per dataset: global batches per epoch (in memory; equal on every worker) or batches per worker
        # (streamed; the fewest any worker's shard promises): every worker takes the same number of steps
        self.full_batches = [self.rt.all_reduce_min(natural[n]) for n in self.names]
        for name, count in zip(self.names, self.full_batches):
            if count < 1:
                raise ValueError(f"train_dataset {name!r}: a worker's shard yields no batch with the chosen sampler")
        self.num_batches = self._worker_steps(self.rt.world_size)
        self.eval_shards: dict[str, Shard] = {}
        if self.job.eval_specs and (self.is_main or args.shard_eval):
            for name, spec in self.job.eval_specs.items():
                table = self.rt.eval_table(name, spec.columns)
                self._check_rows(spec, self.job.eval_losses[name], table)
                self.eval_shards[name] = Shard(table, spec.input_columns, spec.label_column)

    def _worker_steps(self, world_size: int) -> list[int]:
        """Micro-steps per worker of each dataset in a whole epoch on `world_size` workers."""
        return [count if name in self.streams else math.ceil(count / world_size)
                for name, count in zip(self.names, self.full_batches)]

    def _global_full(self, world_size: int) -> list[int]:
        """Global batches of each dataset in a whole epoch on `world_size` workers (streamed: W per step)."""
        if world_size == self.rt.world_size:
            streamed = {n: c for n, c in zip(self.names, self.full_batches) if n in self.streams}
        else:  # what the shards of the checkpoint's worker count promised
            streamed = {n: self._stream_batches(self.job.streamed[n], world_size) for n in self.streams}
        return [streamed[n] * world_size if n in streamed else c for n, c in zip(self.names, self.full_batches)]

    def _stream_batches(self, total_rows: int, world_size: int) -> int:
        """Batches per epoch each of `world_size` streamed shards promises (Ray splits rows equally)."""
        args = self.args
        rows = total_rows // world_size
        return nominal_batches(args.batch_sampler, rows, args.per_device_train_batch_size, args.dataloader_drop_last)

    def _first_plan(self, epoch: int, world_size: int | None = None) -> EpochPlan:
        world_size = world_size or self.rt.world_size
        return EpochPlan.first(self.args.multi_dataset_batch_sampler, self._global_full(world_size), world_size,
                               self.args.seed, epoch)

    def _check_rows(self, spec: DatasetSpec, loss: Any, table: Any) -> None:
        """Check the rows of a shard the driver could not check (lazy Ray data), naming the worker's row."""
        if not spec.rows_checked and table is not None:
            where = f"{dataset_label(spec.name)} (row numbers within worker {self.rt.rank}'s shard)"
            check_dataset_rows(spec, loss, self.model, table, where=where)

    def _stream(self, index: int, name: str, spec: DatasetSpec) -> tuple[WindowedBatches, int]:
        """A streamed dataset of this worker: blocks through a window; its promised batches per epoch."""
        args = self.args
        total = self.job.streamed[name]
        rows = total // self.rt.world_size
        if rows == 0:
            raise ValueError(f"worker {self.rt.rank} received no rows of train_dataset {name!r}")
        block_rows = max(args.per_device_train_batch_size, min(8192, args.streaming_window // 4))
        blocks = self.rt.train_blocks(name, spec.columns, total, block_rows, args.seed)
        row_check = None
        if not spec.rows_checked:  # streamed rows are checked on the fly, block by block
            from raycross.data.rows import RowChecker
            from raycross.training.validation import class_count, dataset_label

            row_check = RowChecker(f"{dataset_label(spec.name)} (row numbers within worker {self.rt.rank}'s "
                                   "streamed epoch)", spec.input_columns, spec.label_column,
                                   class_count(spec, self.job.losses[name], self.model)).check
        stream = WindowedBatches(
            blocks, spec.input_columns, spec.label_column, args.batch_sampler, args.per_device_train_batch_size,
            args.seed, window_rows=args.streaming_window, drop_last=args.dataloader_drop_last,
            group_by_length=args.group_by_length, stream=(index, self.rt.rank), row_check=row_check,
        )
        return stream, self._stream_batches(total, self.rt.world_size)

    def _data_state(self) -> dict[str, Any] | None:
        """Where the streamed datasets stand (recorded with a checkpoint; resume replays up to there)."""
        if not self.streams:
            return None
        epoch, micro = self.position
        done = self._plan_of(epoch).done(micro)
        return {
            "epoch": epoch, "streaming_window": self.args.streaming_window, "world_size": self.rt.world_size,
            "batches_done": {n: done[i] // self.rt.world_size for i, n in enumerate(self.names) if n in self.streams},
            "batches_per_epoch": {n: int(self.num_batches[i]) for i, n in enumerate(self.names) if n in self.streams},
        }

    def _check_data_state(self, state: dict[str, Any] | None) -> None:
        if not self.streams or not state:
            return
        now = {"streaming_window": self.args.streaming_window, "world_size": self.rt.world_size,
               "batches_per_epoch": {n: int(self.num_batches[i]) for i, n in enumerate(self.names) if n in self.streams}}
        changed = {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
        if changed and self.is_main:
            logger.warning("resuming streamed data with other settings than the checkpoint's (%s): the epoch continues "
                           "at the same batch count, but its rows are not the ones the interrupted run would have seen",
                           ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items()))

    def _setup_schedule(self) -> None:
        args = self.args
        self.micro_per_epoch = steps_per_epoch(args.multi_dataset_batch_sampler, self.num_batches)
        self.updates_per_epoch = updates_per_epoch(self.micro_per_epoch, args.gradient_accumulation_steps)
        if args.max_steps > 0:
            self.max_steps = args.max_steps
            self.num_epochs = math.ceil(self.max_steps / self.updates_per_epoch)
        else:
            self.max_steps = math.ceil(args.num_train_epochs * self.updates_per_epoch)
            self.num_epochs = math.ceil(args.num_train_epochs)

        self._set_intervals()

    def _set_intervals(self) -> None:
        """Logging, evaluation and save intervals in steps (a fraction is of ``max_steps``)."""
        args = self.args

        def every(strategy: IntervalStrategy, value: float | None) -> int | None:
            return args.resolve_steps(value, self.max_steps) if strategy is IntervalStrategy.STEPS else None

        self.logging_every = every(args.logging_strategy, args.logging_steps)
        self.eval_every = every(args.eval_strategy, args.eval_steps)
        self.save_every = every(args.save_strategy, args.save_steps)

    def _setup_optimizer(self) -> None:
        args, model, job = self.args, self.model, self.job
        own = {id(p) for p in model.hf_model.parameters()}
        extra = [(f"{name}.{n}", p) for name, loss in job.losses.items() for n, p in loss.named_parameters()
                 if id(p) not in own]
        optimizer, scheduler = job.optimizers
        self.optimizer = optimizer or build_optimizer(model.hf_model, args, extra, job.optimizer_cls_and_kwargs)
        self.scheduler = scheduler or create_scheduler(self.optimizer, args.lr_scheduler_type,
                                                       args.get_warmup_steps(self.max_steps), self.max_steps,
                                                       args.lr_scheduler_kwargs)
        # reduce_lr_on_plateau steps on the evaluation metric, after each evaluation (as in transformers)
        self.plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.scaler = torch.amp.GradScaler(self.rt.device.type) if args.fp16 else None
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

    def _callbacks(self) -> list[Any]:
        built_in: list[Any] = [LogCallback()]
        if self.job.show_progress and not self.args.disable_tqdm and not self.rt.is_ray:
            built_in.append(ProgressCallback())
        if self.is_main:
            from raycross.training.reporting import reporting_callbacks

            built_in += reporting_callbacks(self.args.report_to)
        if self.args.push_to_hub and self.is_main:
            from raycross.hub import HubPushCallback, HubPusher

            built_in.append(HubPushCallback(HubPusher(self.args)))
        return built_in + list(self.job.callbacks)

    # ------------------------------------------------------------------ resume
    def _resume(self) -> None:
        """Continue from the latest complete checkpoint; a corrupt or truncated one is skipped with a warning
        for the one before it (an explicitly requested checkpoint fails instead)."""
        errors: list[str] = []
        for directory in self.rt.resume_candidates():
            failure: Exception | None = None
            try:
                self._load_checkpoint(Path(directory))
            except (ValueError, OSError) as error:
                failure = error
            if not self.rt.any(failure is not None):  # every worker loaded it
                if errors and self.is_main:
                    logger.warning("Resumed from %s instead of the later checkpoint(s) that failed to load", directory)
                return
            reason = str(failure) if failure is not None else "another worker could not load it"
            if self.rt.explicit_resume:
                raise ValueError(f"resume_from_checkpoint={str(directory)!r}: cannot resume: {reason}") from None
            logger.warning("Skipping checkpoint %s: %s; trying the previous complete checkpoint", directory, reason)
            errors.append(f"{directory}: {reason}")
        if errors:
            raise ValueError("no checkpoint of the run could be loaded (delete them or pass "
                             "resume_from_checkpoint=False to start over): " + "; ".join(errors))

    def _load_checkpoint(self, directory: Path) -> None:
        progress = verify_checkpoint(directory)
        device = self.rt.device
        if self.sharded:  # any worker count wrote it: DCP reshards model and optimizer state
            fsdp.load_sharded(directory, self.model.hf_model, self.optimizer, trainable_only=self.model.has_adapter)
            if (directory / SCHEDULER).is_file():
                load_scheduler_state(self.scheduler, load_state(directory / SCHEDULER))
        elif (directory / OPTIMIZER).is_file():
            load_model_weights(self.model.hf_model, directory)
            self.optimizer.load_state_dict(load_state(directory / OPTIMIZER, map_location=device))
            load_scheduler_state(self.scheduler, load_state(directory / SCHEDULER))
            if self.scaler is not None and (directory / SCALER).is_file():
                self.scaler.load_state_dict(load_state(directory / SCALER))
        else:
            load_model_weights(self.model.hf_model, directory)
            logger.warning("checkpoint %s has no optimizer state (save_only_model=True): fresh optimizer", directory)
        rng = directory / rng_file(self.rt.rank)
        rng_state = load_state(rng) if rng.is_file() else None
        try:
            saved = TrainerState.load_from_json(str(directory / TRAINER_STATE))
        except ValueError as error:
            raise ValueError(f"{directory / TRAINER_STATE}: corrupt or truncated ({error})") from None
        if rng_state is not None:
            restore_rng(rng_state)
        for key in ("global_step", "epoch", "log_history", "best_metric", "best_global_step",
                    "best_model_checkpoint", "num_input_tokens_seen"):
            setattr(self.state, key, getattr(saved, key))
        self.position = (progress.epoch, progress.micro_step)
        self._continue_epoch(progress)
        if progress.world_size != self.rt.world_size and self.args.max_steps <= 0:
            self._reschedule(directory)
        self.last_eval_metrics = dict(progress.eval_metrics)
        self.last_eval_step = progress.last_eval_step
        self.last_save_step = self.state.global_step
        self.last_checkpoint = progress.path
        # a finished run continues when max_steps (or num_train_epochs) grew, as in transformers
        self.finished = self.state.global_step >= self.max_steps
        self._check_data_state(progress.data_state)
        if self.finished and self.is_main:
            logger.warning(
                "Nothing to train: the run in %s already reached step %d of max_steps=%d. Raise max_steps or "
                "num_train_epochs to continue it, or pass resume_from_checkpoint=False to start over.",
                directory.parent, self.state.global_step, self.max_steps)
        elif self.is_main:
            logger.info("Resumed from %s at step %d (epoch %d, micro-batch %d)", directory,
                        self.state.global_step, *self.position)

    def _plan_of(self, epoch: int) -> EpochPlan:
        """The plan of `epoch`: the resumed rest for the epoch a resume continues, else a whole epoch's."""
        if self.resumed_plan is not None and self.resumed_epoch == epoch:
            return self.resumed_plan
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            self._plan_cache = (epoch, self._first_plan(epoch))
        return self._plan_cache[1]

    def _continue_epoch(self, progress: Progress) -> None:
        """Continue the checkpoint's epoch: its own plan on the same worker count; on another, the rest of
        the epoch from the global batches trained (in memory: exactly; streamed: at the same share)."""
        self.resumed_plan, self.resumed_epoch, self.plan_offset = None, -1, 0  # a previous candidate's
        epoch, micro, written = progress.epoch, progress.micro_step, progress.world_size
        args, world = self.args, self.rt.world_size
        kind = args.multi_dataset_batch_sampler
        recorded = bool(progress.plan_totals) and set(progress.plan_totals) == set(self.names)
        if recorded:  # the checkpoint itself continued an epoch on another worker count
            plan = EpochPlan.rest(kind, [progress.plan_totals[n] for n in self.names],
                                  [progress.plan_start[n] for n in self.names], written, args.seed, epoch)
            offset = progress.plan_offset
        else:
            plan, offset = self._first_plan(epoch, written), 0
        if written == world:
            if recorded:
                self.resumed_plan, self.resumed_epoch, self.plan_offset = plan, epoch, offset
            return
        done, totals = plan.done(micro), list(plan.totals)
        for d, name in enumerate(self.names):
            if name in self.streams:  # this worker count's shards hold other rows: the same share of them
                count = self.num_batches[d]
                share = done[d] / totals[d] if totals[d] else 0.0
                totals[d], done[d] = count * world, min(count, math.ceil(share * count)) * world
        self.resumed_plan = EpochPlan.rest(kind, totals, done, world, args.seed, epoch)
        self.resumed_epoch, self.plan_offset, self.position = epoch, offset + micro, (epoch, 0)
        if self.is_main:
            logger.info("Checkpoint written by %d workers, resuming on %d: epoch %d continues after global batches "
                        "%s of %s (in-memory data: exactly the batches not trained yet; streamed data: the same "
                        "share of each worker's shard)", written, world, epoch, dict(zip(self.names, done)),
                        dict(zip(self.names, totals)))

    def _reschedule(self, directory: Path) -> None:
        """An epoch-based run resumed on another worker count: its remaining steps are the rest of the
        epoch plus the remaining whole epochs on this worker count; the learning-rate schedule ends there."""
        args = self.args
        epoch = self.position[0]
        rest = len(self._plan_of(epoch).schedule) - self.position[1]
        remaining = updates_per_epoch(rest, args.gradient_accumulation_steps) if rest else 0
        remaining += max(0, self.num_epochs - epoch - 1) * self.updates_per_epoch
        max_steps = self.state.global_step + remaining
        if max_steps == self.max_steps:
            return
        self.max_steps = self.state.max_steps = max_steps
        self._set_intervals()
        if self.job.optimizers[1] is None and not self.plateau:
            lrs = [group["lr"] for group in self.optimizer.param_groups]
            self.scheduler = create_scheduler(self.optimizer, args.lr_scheduler_type, args.get_warmup_steps(max_steps),
                                              max_steps, args.lr_scheduler_kwargs)
            if (directory / SCHEDULER).is_file():
                load_scheduler_state(self.scheduler, load_state(directory / SCHEDULER))
            for group, lr in zip(self.optimizer.param_groups, lrs):  # the next step takes the new schedule's
                group["lr"] = lr

    # ------------------------------------------------------------------ the loop
    def train(self) -> LoopOutput:
        args, state = self.args, self.state
        self.clock = _Throughput(time.perf_counter())
        started = time.perf_counter()
        start_step = state.global_step
        self.control = self.handler.call("on_train_begin", args, state, self.control, model=self.model)
        stop = self.finished
        epoch = self.position[0]
        while not stop and epoch < self.num_epochs:
            stop = self._train_epoch(epoch)
            epoch += 1
        metrics = self._finish(time.perf_counter() - started, state.global_step - start_step)
        self.control = self.handler.call("on_train_end", args, state, self.control, model=self.model)
        return LoopOutput(state=state, last_checkpoint=self.last_checkpoint, metrics=metrics)

    def _train_epoch(self, epoch: int) -> bool:
        """One epoch (or its rest after a resume); True when training must stop."""
        args, state = self.args, self.state
        accumulation = args.gradient_accumulation_steps
        plan = self._plan_of(epoch)
        schedule, world, rank = plan.schedule, plan.world_size, self.rt.rank
        step_plan = epoch_step_plan(schedule, self.names)
        batches = {name: fixed_epoch_batches(self.samplers[name], epoch, count)
                   for name, count in zip(self.names, self.full_batches) if name not in self.streams}
        start = self.position[1] if epoch == self.position[0] else 0
        done = plan.done(start)  # streamed: per-worker batches are global ones / W
        streamed = {name: self.streams[name].epoch(epoch, (plan.start[d] + steps * world) // world,
                                                   skip=done[d] // world)
                    for d, (name, steps) in enumerate(zip(self.names, plan.steps)) if name in self.streams}
        remaining_updates = self.max_steps - state.global_step
        stop_at = min(len(step_plan), start + remaining_updates * accumulation)
        # a resumed plan (another worker count) numbers its steps on from where the epoch stood
        offset = self.plan_offset if plan is self.resumed_plan else 0

        def make_batch(i: int) -> Batch:
            name, j = step_plan[i]
            seed = batch_seed(args.seed, epoch, offset + i, rank)
            prompt = dataset_prompt(args.prompts, name)
            if name in streamed:  # the next batch of the stream (steps are built in order)
                inputs, labels, rows = next(streamed[name])
                return Batch(name, inputs, labels, rows, seed=seed, prompt=prompt)
            d = self.names.index(name)
            index = plan.global_batch(d, j, rank)
            padding = index >= plan.totals[d]  # no batch left for this worker: weight 0, same step count
            rows = batches[name][index % len(batches[name])]
            inputs, labels = self.shards[name].batch(rows)
            return Batch(name, inputs, labels, 0 if padding else len(rows), seed=seed, prompt=prompt,
                         weight=0.0 if padding else 1.0)

        if start == 0:
            self.control = self.handler.call("on_epoch_begin", args, state, self.control, model=self.model)
        stream = BatchStream(range(start, stop_at), make_batch, self.model, self.job.losses, args.prefetch_batches)
        step_loss = torch.zeros((), device=self.rt.device)
        components: dict[str, torch.Tensor] = {}
        tokens = 0
        stop = False
        for i, batch in zip(range(start, stop_at), stream):
            group_start = (i // accumulation) * accumulation
            group_size = min(accumulation, len(step_plan) - group_start)
            last_in_group = i == group_start + group_size - 1
            if i == group_start:
                self.control = self.handler.call("on_step_begin", args, state, self.control, model=self.model)

            # forward + backward of one micro-batch: the loss scores its plan, tokenized ahead; gradients
            # are synced across workers on the group's last micro-batch only
            with self.model.gradient_sync(last_in_group):
                with self._autocast():
                    out = call_loss(self.job.losses[batch.dataset], batch.loss_inputs, batch.labels, batch.prompt)
                loss = _total(out) * batch.weight
                scaled = loss / group_size
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            step_loss += loss.detach() / group_size
            if isinstance(out, dict):
                for key, value in out.items():
                    components[key] = components.get(key, 0.0) + value.detach().float() * batch.weight / group_size
            self.clock.samples += batch.num_rows
            tokens += batch.num_tokens if batch.weight else 0
            if not last_in_group:
                self.control = self.handler.call("on_substep_end", args, state, self.control)
                continue

            grad_norm, stepped = self._optimizer_step(step_loss)
            state.global_step += 1
            state.epoch = epoch + (offset + i + 1) / (offset + len(step_plan))
            state.num_input_tokens_seen += tokens
            self.clock.tokens += tokens
            tokens = 0
            if stepped:
                self.clock.add_step(step_loss, grad_norm, components)
            elif self.is_main:
                logger.warning("step %d: non-finite loss (%s) or gradient norm (%s): step skipped, weights unchanged "
                               "(skip_nonfinite_steps=True)", state.global_step, float(step_loss), float(grad_norm))
            step_loss = torch.zeros((), device=self.rt.device)
            components = {}
            self.position = (epoch, i + 1) if i + 1 < len(step_plan) else (epoch + 1, 0)
            self.control = self.handler.call("on_step_end", args, state, self.control, model=self.model)
            stop = self._after_step(epoch_end=i + 1 == len(step_plan))
            if stop:
                break
        stream.close()
        for iterator in streamed.values():
            iterator.close()
        return stop or state.global_step >= self.max_steps

    def _autocast(self) -> Any:
        return autocast_for(self.args.bf16, self.args.fp16, self.rt.device.type)()

    def _optimizer_step(self, loss: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Unscale, clip and step; (grad norm, whether the weights were updated). A non-finite loss or
        gradient norm stops training before the weights change, or skips the step (skip_nonfinite_steps)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.args.max_grad_norm if self.args.max_grad_norm else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor over the shards
            grad_norm = grad_norm.full_tensor()
        if not self._finite(loss, grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            if not self.plateau:
                self.scheduler.step()
            return grad_norm.detach(), False
        self.control = self.handler.call("on_pre_optimizer_step", self.args, self.state, self.control)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.control = self.handler.call("on_optimizer_step", self.args, self.state, self.control)
        if not self.plateau:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.detach(), True

    def _finite(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
        """Whether the step's loss and gradient norm are finite on every worker (one sync per step). With
        fp16 the GradScaler handles overflowing gradients itself: only the loss is checked."""
        values = torch.stack([loss.detach().float().reshape(()), grad_norm.detach().float().reshape(()).to(loss.device)])
        local_bad = not bool(torch.isfinite(values if self.scaler is None else values[:1]).all())
        bad = self.rt.any(local_bad) if self.rt.world_size > 1 else local_bad
        if not bad or self.args.skip_nonfinite_steps:
            return not bad
        step = self.state.global_step + 1
        found = (f"loss {float(values[0])}, gradient norm {float(values[1])}" if local_bad
                 else "a non-finite loss or gradient on another worker")
        raise FloatingPointError(
            f"step {step}: non-finite training values ({found}); training stopped before the optimizer step, so no "
            f"weights became NaN/inf. The last checkpoint is {self.last_checkpoint or 'none'}. Lower learning_rate, "
            "check the data and labels, or set skip_nonfinite_steps=True to skip such steps (each is logged)."
        )

    # ------------------------------------------------------------------ log / evaluate / save on schedule
    def _after_step(self, epoch_end: bool) -> bool:
        """Log, evaluate and save when due (HF DefaultFlowCallback rules); True to stop training."""
        args, state = self.args, self.state
        step = state.global_step
        done = step >= self.max_steps
        if epoch_end:  # before the flags: a callback may ask for an evaluation or a save at epoch end
            self.control = self.handler.call("on_epoch_end", args, state, self.control, model=self.model)
        control = self.control

        def due(strategy: IntervalStrategy, every: int | None) -> bool:
            if strategy is IntervalStrategy.STEPS:
                return bool(every) and step % every == 0
            return strategy is IntervalStrategy.EPOCH and epoch_end

        flags = [
            due(args.logging_strategy, self.logging_every) or (args.logging_first_step and step == 1)
            or control.should_log or done,
            # the final evaluation comes before the final save, so the last checkpoint carries fresh metrics
            due(args.eval_strategy, self.eval_every) or control.should_evaluate or (done and self._evaluates()),
            due(args.save_strategy, self.save_every) or control.should_save,
            control.should_training_stop,
        ]
        if self.job.callbacks:  # user callbacks may decide differently on different workers
            flags = [bool(f) for f in self.rt.all_reduce_sum([float(f) for f in flags])]
        should_log, should_evaluate, should_save, should_stop = flags
        control.should_log = control.should_evaluate = control.should_save = False
        if should_log:
            self._log_training()
        if should_evaluate:
            self.evaluate()
        if should_save:
            self.save()
        elif should_evaluate:
            self.rt.report(self._report_metrics())
        if self.job.callbacks and not should_stop:
            should_stop = self.rt.any(self.control.should_training_stop)
        return bool(should_stop)

    def log(self, logs: dict[str, float]) -> None:
        """Record a log entry (rank 0 keeps the history) and call ``on_log``."""
        logs = {**logs, "epoch": round(self.state.epoch, 4)}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.handler.call("on_log", self.args, self.state, self.control, logs=logs)

    def _log_training(self) -> None:
        summary = self.clock.collect(self.rt)
        if summary is None:
            return
        summary["learning_rate"] = self.scheduler.get_last_lr()[0]
        self.log(summary)

    def _report_metrics(self) -> dict[str, Any]:
        return {"step": self.state.global_step, "epoch": self.state.epoch, **self.last_eval_metrics}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Evaluation loss per eval dataset + the evaluator; identical metrics on every worker."""
        job, args = self.job, self.args
        started = time.perf_counter()
        # FSDP: every worker gathers the parameters, then evaluates (or waits) without collectives
        with fsdp.gathered(self.model.hf_model) if self.sharded else nullcontext():
            metrics = evaluate_model(
                self.model, self.eval_shards, job.eval_losses, args.per_device_eval_batch_size, job.evaluator,
                single_eval=job.single_eval, autocast=self._autocast, prompts=args.prompts,
                quiet_losses=[*job.losses.values(), *job.eval_losses.values()], workers=self.rt,
                shard_eval=args.shard_eval,
                output_path=None if self.rt.is_ray else str(Path(args.output_dir) / "eval"),
                epoch=self.state.epoch, step=self.state.global_step, compute_metrics=job.compute_metrics,
            )
        metrics["eval_runtime"] = round(time.perf_counter() - started, 4)
        self.last_eval_metrics = metrics
        self.last_eval_step = self.state.global_step
        self.log(metrics)
        # as in transformers: callbacks see the best metric of the previous evaluations
        self.control = self.handler.call("on_evaluate", self.args, self.state, self.control, metrics=metrics,
                                         model=self.model)
        if self.plateau:
            key = self.job.metric_key or ("eval_loss" if "eval_loss" in metrics else None)
            if key not in metrics:
                raise ValueError(f"lr_scheduler_type='reduce_lr_on_plateau' steps on {key or 'eval_loss'!r}; the "
                                 f"evaluation produced {sorted(metrics)} (set metric_for_best_model)")
            self.scheduler.step(metrics[key])
        self._track_best(metrics)
        return metrics

    def _track_best(self, metrics: dict[str, float]) -> None:
        key = self.job.metric_key
        if key is None:
            return
        if key not in metrics:
            raise ValueError(
                f"metric_for_best_model={self.args.metric_for_best_model!r}: the evaluation produced the keys "
                f"{sorted(metrics)}, not {key!r}"
            )
        value = float(metrics[key])
        best = self.state.best_metric
        # ties go to the later step, as in checkpoint rotation (Ray Train's rule): the best stays on disk
        better = best is None or (value >= best if self.args.greater_is_better else value <= best)
        if better:
            self.state.best_metric = value
            self.state.best_global_step = self.state.global_step

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """A full checkpoint (model, optimizer, scheduler, scaler, RNG per worker, state, data position)."""
        state = self.state
        name = f"checkpoint-{state.global_step}"
        if self.is_main:
            logger.info("Saving checkpoint %s", name)
        self.last_save_step = state.global_step
        metrics = self._report_metrics()
        if self.job.metric_key is not None:
            evaluated = self.last_eval_step == state.global_step
            metrics[CHECKPOINT_SCORE] = checkpoint_score(self.last_eval_metrics.get(self.job.metric_key), evaluated,
                                                         bool(self.args.greater_is_better))
        path = self.rt.checkpoint_path(name)
        if state.best_global_step == state.global_step:
            state.best_model_checkpoint = path
        try:
            self._write_checkpoint(name, metrics, path)
        except OSError as error:
            raise_if_no_space(error, f"checkpoint {name} ({path})")
            raise
        self.last_checkpoint = self.rt.last_checkpoint or path
        self.control = self.handler.call("on_save", self.args, state, self.control, model=self.model,
                                         checkpoint_dir=self.last_checkpoint)

    def _write_checkpoint(self, name: str, metrics: dict[str, Any], path: str) -> None:
        state = self.state
        with self.rt.checkpoint(name, metrics) as directory:
            save_state(capture_rng(), directory / rng_file(self.rt.rank))
            if self.sharded:  # every worker writes its shards (only adapter + head with an adapter)
                optimizer = None if self.args.save_only_model else self.optimizer
                fsdp.save_sharded(directory, self.model.hf_model, optimizer, trainable_only=self.model.has_adapter)
            if self.is_main and self.sharded:
                save_state(scheduler_state(self.scheduler), directory / SCHEDULER)
            elif self.is_main:
                self.model.save_pretrained(directory)
                if not self.args.save_only_model:
                    save_state(self.optimizer.state_dict(), directory / OPTIMIZER)
                    save_state(scheduler_state(self.scheduler), directory / SCHEDULER)
                    if self.scaler is not None:
                        save_state(self.scaler.state_dict(), directory / SCALER)
            if self.is_main:
                state.save_to_json(str(directory / TRAINER_STATE))
                write_json(directory / TRAINING_ARGS, self.args.to_dict())
                plan = self._plan_of(self.position[0])
                resumed = plan is self.resumed_plan
                Progress(  # written last: its file sizes tell a complete checkpoint from a truncated one
                    epoch=self.position[0], micro_step=self.position[1], metrics=metrics,
                    plan_start=dict(zip(self.names, plan.start)) if resumed else {},
                    plan_totals=dict(zip(self.names, plan.totals)) if resumed else {},
                    plan_offset=self.plan_offset if resumed else 0,
                    eval_metrics=self.last_eval_metrics, last_eval_step=self.last_eval_step,
                    finished=state.global_step >= self.max_steps, world_size=self.rt.world_size,
                    max_steps=self.max_steps, path=path, data_state=self._data_state(),
                    files=file_sizes(directory),
                ).write(directory)

    def _evaluates(self) -> bool:
        """Whether this run evaluates at all (an eval dataset or an evaluator, and an eval strategy)."""
        has_eval = bool(self.job.eval_specs) or self.job.evaluator is not None
        return has_eval and self.args.eval_strategy is not IntervalStrategy.NO

    # ------------------------------------------------------------------ end of training
    def _finish(self, runtime_s: float, steps_done: int) -> dict[str, float]:
        """Final evaluation and checkpoint when due, summary metrics (the driver restores the best model)."""
        args, state = self.args, self.state
        if self._evaluates() and self.last_eval_step != state.global_step:
            self.evaluate()
        if self.clock.steps:
            self._log_training()  # the window since the last log line (training stopped early)
        samples, tokens = self.rt.all_reduce_sum([float(self.clock.total_samples), float(self.clock.total_tokens)])
        total_loss = self.rt.all_reduce_sum([self.clock.total_loss])[0] / max(1, self.rt.world_size)
        summary = {
            "train_runtime": round(runtime_s, 4),
            "train_samples_per_second": round(samples / runtime_s, 3) if runtime_s > 0 else 0.0,
            "train_steps_per_second": round(steps_done / runtime_s, 3) if runtime_s > 0 else 0.0,
            "train_tokens_per_second": round(tokens / runtime_s, 3) if runtime_s > 0 else 0.0,
            "train_loss": total_loss / max(1, self.clock.total_steps),
        }
        if not self.finished:
            self.log(summary)
        needs_checkpoint = args.save_strategy is not IntervalStrategy.NO or self.rt.is_ray
        if needs_checkpoint and self.last_save_step != state.global_step:
            self.save()
        elif self.rt.is_ray and not self.finished:
            # the last checkpoint predates the summary line: the driver takes it from this last report
            self.rt.report({**summary, "step": state.global_step, "epoch": state.epoch})
        return {**summary, **self.last_eval_metrics}


def _total(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    if isinstance(out, dict):
        return torch.stack([v.float() for v in out.values()]).sum()
    return out


class _Throughput:
    """Accumulates loss, grad norm and throughput between two log lines (and over the whole run)."""

    def __init__(self, now: float) -> None:
        self.since = now
        self.samples = 0
        self.tokens = 0
        self.steps = 0
        self.loss = 0.0
        self.grad_norm = 0.0
        self.components: dict[str, float] = {}
        self.total_samples = 0
        self.total_tokens = 0
        self.total_steps = 0
        self.total_loss = 0.0
        self._loss_t: list[torch.Tensor] = []

    def add_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, components: dict[str, torch.Tensor]) -> None:
        self._loss_t.append(loss)
        self.grad_norm_t = grad_norm
        for key, value in components.items():
            self.components[key] = self.components.get(key, 0.0) + float(value)
        self.steps += 1

    def collect(self, runtime: Any) -> dict[str, float] | None:
        """The averages since the last call, summed over workers (loss averaged); resets the window."""
        if not self.steps:
            return None
        loss = float(torch.stack(self._loss_t).sum())  # one device sync per log line, not per step
        grad_norm = float(self.grad_norm_t)
        keys = sorted(self.components)
        values = [loss, grad_norm, float(self.samples), float(self.tokens)] + [self.components[k] for k in keys]
        values = runtime.all_reduce_sum(values)
        world = runtime.world_size
        now = time.perf_counter()
        elapsed = max(now - self.since, 1e-9)
        logs = {
            "loss": values[0] / (self.steps * world),
            "grad_norm": values[1] / world,
            "samples_per_second": round(values[2] / elapsed, 3),
            "tokens_per_second": round(values[3] / elapsed, 3),
        }
        logs.update({k: v / (self.steps * world) for k, v in zip(keys, values[4:])})
        self.total_samples += self.samples
        self.total_tokens += self.tokens
        self.total_steps += self.steps
        self.total_loss += loss
        self.since, self.samples, self.tokens, self.steps, self.components, self._loss_t = now, 0, 0, 0, {}, []
        return logs
