"""CrossEncoderTrainer: the driver. Checks everything, then trains in this process (``num_workers=0``) or
on Ray Train workers (``TorchTrainer``, DDP), and writes the final model, its trainer state and model card
to ``output_dir``.

Example:
    >>> from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    >>> from raycross.losses import BinaryCrossEntropyLoss
    >>> model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased")  # doctest: +SKIP
    >>> args = CrossEncoderTrainingArguments("out", num_train_epochs=1, num_workers=2)  # doctest: +SKIP
    >>> trainer = CrossEncoderTrainer(model, args, train_dataset={"query": [...], "passage": [...], "label": [...]},
    ...                               loss=BinaryCrossEntropyLoss(model))  # doctest: +SKIP
    >>> result = trainer.train()  # doctest: +SKIP
    >>> result.metrics["train_loss"], result.best_checkpoint  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pyarrow as pa
import torch

from raycross.data import DatasetSpec, is_paths, is_ray_dataset, to_arrow, to_ray
from raycross.training.arguments import CrossEncoderTrainingArguments
from raycross.training.checkpoints import CHECKPOINT_SCORE, clear_checkpoints
from raycross.training.finish import RunOutcome, TrainResult, finish_run, outcome_from_checkpoint
from raycross.training.location import RunLocation, open_checkpoint
from raycross.training.lock import RunLock, UriRunLock
from raycross.training.loop import TrainJob, run_training, train_loop_per_worker
from raycross.training.runtime import EVAL_PREFIX, TRAIN_PREFIX, LocalRuntime
from raycross.training.validation import (
    as_named,
    check_batching,
    check_best_metric,
    check_dataset_against_loss,
    check_dataset_rows,
    check_losses_take_prompts,
    check_prompts,
    check_resources,
    check_strategies,
    dataset_label,
    resolve_losses,
)
from raycross.data.rows import describe_conversion_error

logger = logging.getLogger(__name__)


class CrossEncoderTrainer:
    """Train a :class:`~raycross.CrossEncoder` (sentence-transformers ``CrossEncoderTrainer`` semantics).

    Args:
        model: the CrossEncoder to train (trained in place; after ``train()`` it holds the final weights).
        args: :class:`CrossEncoderTrainingArguments` (``output_dir`` is required).
        train_dataset: a dataset (HF ``Dataset``, Ray ``Dataset``, list of dicts, dict of columns, file
            paths), or a dict of them (multi-dataset training: every batch comes from one dataset).
        eval_dataset: same forms; its loss is reported as ``eval_loss`` (``eval_<name>_loss`` for a dict).
        loss: a loss module, a dict of them with the keys of ``train_dataset``, or a callable
            ``model -> loss``; default BinaryCrossEntropyLoss (1 label) or CrossEntropyLoss.
        evaluator: a raycross evaluator (or a list of them, run as a SequentialEvaluator).
        callbacks: transformers ``TrainerCallback`` objects (they run in every worker).

    All checks (columns vs loss vs ``num_labels``, dict keys, batch sizes, strategies, the best-model
    metric, cluster resources) run here and in ``train()`` before any worker starts.
    """

    def __init__(
        self,
        model: Any = None,
        args: CrossEncoderTrainingArguments | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        loss: Any = None,
        evaluator: Any = None,
        callbacks: list[Any] | None = None,
        model_init: Callable[..., Any] | None = None,
        compute_metrics: Callable[[Any], dict[str, float]] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
    ) -> None:
        if model is None and model_init is not None:
            model = _call_model_init(model_init)
        elif model is not None and model_init is not None:
            logger.warning("CrossEncoderTrainer requires either a `model` or `model_init` argument, but not both. "
                           "`model_init` will overwrite your model when calling the `train` method.")
        if model is None or not hasattr(model, "hf_model") or not hasattr(model, "preprocess"):
            raise TypeError(f"model: expected a raycross CrossEncoder, found {type(model).__name__}")
        if args is None:
            args = CrossEncoderTrainingArguments(output_dir="tmp_trainer")
        if not isinstance(args, CrossEncoderTrainingArguments):
            raise TypeError(f"args: expected CrossEncoderTrainingArguments, found {type(args).__name__}")
        if train_dataset is None:
            raise ValueError("train_dataset: required (a dataset, or a dict of datasets), found None")
        self.model = model
        self.args = args
        self.model_init = model_init
        self.compute_metrics = compute_metrics
        self.optimizers, self.optimizer_cls_and_kwargs = _check_optimizers(optimizers, optimizer_cls_and_kwargs, args)
        lora_config = _check_adapter(model, args)
        self.callbacks = list(callbacks or [])
        # Ray Train RunConfig callbacks (run in the Train controller) for multi-worker runs, e.g. Tune's report
        self.run_callbacks: list[Any] = []
        if isinstance(evaluator, (list, tuple)):
            from raycross.evaluation import SequentialEvaluator

            evaluator = SequentialEvaluator(evaluator)
        self.evaluator = evaluator

        from raycross.data.iterable import check_not_iterable

        check_not_iterable(train_dataset, "train_dataset")
        check_not_iterable(eval_dataset, "eval_dataset")
        train_named, self.single_train = as_named(train_dataset, "train")
        eval_named, self.single_eval = as_named(eval_dataset, "eval")
        if not train_named:
            raise ValueError("train_dataset: an empty dict of datasets")
        self.losses = resolve_losses(model, loss, list(train_named), self.single_train)
        self.eval_losses = self._resolve_eval_losses(loss, list(eval_named))

        distributed = args.num_workers > 0
        self.streamed: dict[str, int] = {}  # streamed training datasets: name -> rows
        self._train_data, self.train_specs, self._train_tables = self._inspect(train_named, "train", distributed)
        self._eval_data, self.eval_specs, self._eval_tables = self._inspect(eval_named, "eval", distributed)
        for name, spec in self.train_specs.items():
            check_dataset_against_loss(spec, self.losses[name], model, self._train_tables.get(name))
            check_batching(spec, args, self._train_tables.get(name))
        for name, spec in self.eval_specs.items():
            check_dataset_against_loss(spec, self.eval_losses[name], model, self._eval_tables.get(name))
        for specs, tables, losses in ((self.train_specs, self._train_tables, self.losses),
                                      (self.eval_specs, self._eval_tables, self.eval_losses)):
            for name, table in tables.items():
                check_dataset_rows(specs[name], losses[name], model, table)
                specs[name].rows_checked = True
        check_strategies(args, bool(eval_named), evaluator is not None)
        check_prompts(args, list(train_named), list(eval_named), self.single_train)
        check_losses_take_prompts(args.prompts, {**self.losses, **self.eval_losses})
        self.metric_key = check_best_metric(args, evaluator, list(eval_named), self.single_eval, model.num_labels)
        self.location = RunLocation.from_args(args)
        if self.location.is_remote and args.num_workers == 0:
            raise ValueError(f"storage_path={args.storage_path!r}: a URI needs Ray workers (num_workers > 0); "
                             "in-process training writes checkpoints to a local directory")
        _prepare_adapter(model, lora_config)  # last: a failed check above leaves the model untouched

    # ------------------------------------------------------------------ construction helpers
    def _resolve_eval_losses(self, loss: Any, eval_names: list[str]) -> dict[str, Any]:
        if not eval_names:
            return {}
        if isinstance(loss, dict):
            if self.single_eval:
                raise ValueError(
                    f"eval_dataset: with a dict of losses (keys {sorted(loss)}), eval_dataset must be a dict whose "
                    "keys are among the loss keys; found a single dataset"
                )
            unknown = sorted(set(eval_names) - set(self.losses))
            if unknown:
                raise ValueError(f"eval_dataset: keys {unknown} have no loss; the losses have keys {sorted(self.losses)}")
            return {name: self.losses[name] for name in eval_names}
        shared = next(iter(self.losses.values()))
        return {name: shared for name in eval_names}

    def _inspect(self, named: dict[str, Any], kind: str, distributed: bool) -> tuple[dict, dict, dict]:
        """Per dataset: the data to ship, its spec and (when in memory) its Arrow table.

        With Ray workers, a Ray Dataset or data files stay lazy (read by Ray Data, on the workers); all
        else is converted to an Arrow table here (and checked in full: label ranges, label counts).
        """
        from raycross.training.streaming import ParquetFiles, choose_streaming, parquet_paths

        data, specs, tables = {}, {}, {}
        world = max(1, self.args.num_workers)
        for name, dataset in named.items():
            where = kind if len(named) == 1 and name == kind else f"{kind}:{name}"
            lazy = is_ray_dataset(dataset) or is_paths(dataset)
            if distributed and lazy:
                data[name] = to_ray(dataset)
                specs[name] = DatasetSpec.from_ray(where, data[name])
            elif kind == "train" and parquet_paths(dataset) is not None and choose_streaming(
                    self.args.streaming, dataset, True, world):
                data[name] = ParquetFiles(parquet_paths(dataset))  # in this process, read block by block
                specs[name] = DatasetSpec.from_sample(where, data[name].head(1), data[name].num_rows)
            elif kind == "train" and is_ray_dataset(dataset) and self.args.streaming is not False and choose_streaming(
                    self.args.streaming, dataset, True, world, *_count_and_sample(dataset)):
                data[name] = dataset  # in this process, through Ray Data block by block
                specs[name] = DatasetSpec.from_ray(where, dataset)
            else:
                try:
                    table = to_arrow(dataset)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                    raise describe_conversion_error(dataset, dataset_label(where), error) from None
                data[name], specs[name], tables[name] = table, DatasetSpec.from_table(where, table), table
            if kind == "train" and choose_streaming(self.args.streaming, dataset, lazy, world, specs[name].num_rows,
                                                    specs[name].sample_row):
                self.streamed[name] = specs[name].num_rows
        if self.streamed and kind == "train":
            logger.info("streaming the training data %s through a window of %d rows per worker",
                        sorted(self.streamed), self.args.streaming_window)
        return data, specs, tables

    def add_callback(self, callback: Any) -> None:
        """Add a transformers ``TrainerCallback`` (or compatible object)."""
        self.callbacks.append(callback)

    # ------------------------------------------------------------------ paths
    @property
    def run_dir(self) -> str:
        """Where checkpoints go: ``output_dir`` by default, else ``storage_path/run_name`` (see :class:`RunLocation`)."""
        return self.location.run_dir

    def _job(self, resume_from: str | None, show_progress: bool) -> TrainJob:
        return TrainJob(
            model=self.model, args=self.args, train_specs=self.train_specs, losses=self.losses,
            eval_specs=self.eval_specs, eval_losses=self.eval_losses, evaluator=self.evaluator,
            callbacks=self.callbacks, single_eval=self.single_eval, metric_key=self.metric_key,
            show_progress=show_progress, resume_from=resume_from, compute_metrics=self.compute_metrics,
            optimizer_cls_and_kwargs=self.optimizer_cls_and_kwargs, optimizers=self.optimizers,
            streamed=dict(self.streamed),
        )

    # ------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint: str | bool | None = None) -> TrainResult:
        """Train; returns a :class:`TrainResult`. The final model goes to ``args.output_dir``.

        Args:
            resume_from_checkpoint: ``None``/``True`` (default): continue from the latest checkpoint of a
                previous run with the same output_dir/run_name, if any; a path: continue from that
                checkpoint; ``False``: start fresh, deleting the checkpoints a previous run left in the same
                place (``output_dir``, or ``storage_path/run_name``).
        """
        check_resources(self.args, streamed=bool(self.streamed))
        if self.args.num_workers > 0:
            from raycross.ray_connect import check_reachable

            import ray

            if not ray.is_initialized():
                check_reachable()
        if self.model_init is not None:
            self._reinit_model()
        resume_from = str(resume_from_checkpoint) if isinstance(resume_from_checkpoint, (str, os.PathLike)) else None
        with self._run_locks():
            self._clean_interrupted_writes()
            if resume_from_checkpoint is False:
                deleted = clear_checkpoints(self.run_dir)
                if deleted:
                    logger.warning("resume_from_checkpoint=False: deleted %d checkpoint(s) of the previous run in %s",
                                   len(deleted), self.run_dir)
            result = self._train_local(resume_from) if self.args.num_workers == 0 else self._train_ray(resume_from)
        if self.args.push_to_hub:
            self.push_to_hub()
        return result

    def _run_locks(self) -> ExitStack:
        """The run's locks: ``output_dir`` and, when elsewhere, the run directory (advisory on a URI)."""
        stack = ExitStack()
        try:
            stack.enter_context(RunLock(self.location.output_dir, "output_dir"))
            if self.location.is_remote:  # advisory: object stores have no exclusive create
                stack.enter_context(UriRunLock(self.location.run_dir, "run directory (storage_path/run_name)"))
            elif self.location.run_dir != self.location.output_dir:
                stack.enter_context(RunLock(self.location.run_dir, "run directory (storage_path/run_name)"))
        except BaseException:
            stack.close()
            raise
        return stack

    def _clean_interrupted_writes(self) -> None:
        """Remove what killed checkpoint writes and exports left behind (this run holds the locks)."""
        from raycross.training.checkpoints import clean_interrupted_writes
        from raycross.training.export import recover_export

        if not self.location.is_remote:
            clean_interrupted_writes(self.location.run_dir)
        recover_export(self.location.output_dir)

    def push_to_hub(self, commit_message: str | None = None) -> str:
        """Upload ``output_dir`` (final model, model card, trainer state; not the checkpoints) to
        ``args.hub_model_id`` (default: the output directory's name); returns the commit URL.

        Example:
            >>> trainer.push_to_hub()  # doctest: +SKIP
        """
        from raycross.hub import HubPusher

        url = HubPusher(self.args).push_final(self.args.output_dir, commit_message)
        logger.info("Pushed %s to the hub: %s", self.args.output_dir, url)
        return url

    def _train_local(self, resume_from: str | None) -> TrainResult:
        args = self.args
        use_gpu = args.use_gpu if args.use_gpu is not None else torch.cuda.is_available()
        device = "cuda" if use_gpu else "cpu"
        runtime = LocalRuntime(
            self._train_data, self._eval_data, self.run_dir, device=device, num_to_keep=args.save_total_limit,
            score_attribute=CHECKPOINT_SCORE if self.metric_key else None, greater_is_better=bool(args.greater_is_better),
            resume_from=resume_from,
        )
        output = run_training(self._job(resume_from, show_progress=True), runtime)
        # the model object was trained in place: it holds the final weights
        outcome = RunOutcome(dataclasses.asdict(output.state), output.metrics, output.last_checkpoint)
        return finish_run(self, outcome)

    def _train_ray(self, resume_from: str | None) -> TrainResult:
        import ray
        from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        args = self.args
        if not ray.is_initialized():
            # a runtime_env here would clash with a Ray job's own (ray job submit --runtime-env);
            # the workers get the variable from their worker runtime env, a local cluster inherits it
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from raycross.ray_connect import init_ray

            init_ray()
            check_resources(args, streamed=bool(self.streamed))  # against the instance just started
        use_gpu = args.use_gpu
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) >= args.num_workers
        datasets, shared = {}, {}
        for name, data in self._train_data.items():
            if name in self.streamed:  # split by Ray Data: each worker streams its own shard
                datasets[TRAIN_PREFIX + name] = self._as_ray(data, self.train_specs[name])
            else:  # every worker reads all rows, zero-copy from the object store (one copy per node)
                shared[name] = self._shared_table(data, self.train_specs[name])
        for name, data in self._eval_data.items():
            datasets[EVAL_PREFIX + name] = self._as_ray(data, self.eval_specs[name])
        split = [TRAIN_PREFIX + n for n in self._train_data if n in self.streamed]
        if args.shard_eval:
            split += [EVAL_PREFIX + n for n in self._eval_data]
        from ray.data import ExecutionOptions

        # preserve_order: the same rows go to the same worker in the same order on every (re)start
        options = {name: ExecutionOptions(preserve_order=True) for name in datasets}
        storage_path, name = self.location.storage_path, self.location.name
        checkpoint_config = CheckpointConfig(
            num_to_keep=args.save_total_limit,
            checkpoint_score_attribute=CHECKPOINT_SCORE if self.metric_key else None,
            checkpoint_score_order="max" if args.greater_is_better else "min",
        )
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"job": self._job(resume_from, show_progress=False), "tables": shared},
            scaling_config=ScalingConfig(num_workers=self._worker_count(), use_gpu=bool(use_gpu),
                                         resources_per_worker=args.resources_per_worker,
                                         elastic_resize_monitor_interval_s=args.elastic_resize_interval_s),
            run_config=RunConfig(
                name=name, storage_path=storage_path, failure_config=FailureConfig(max_failures=args.max_failures),
                checkpoint_config=checkpoint_config,
                callbacks=list(self.run_callbacks) or None,
                worker_runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
            ),
            datasets=datasets,
            dataset_config=DataConfig(datasets_to_split=split, execution_options=options, enable_shard_locality=False),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"the Ray Train run {name!r} reported no checkpoint; see the worker logs above")
        checkpoint = result.checkpoint
        with open_checkpoint(checkpoint.path, checkpoint.filesystem) as last:
            outcome = outcome_from_checkpoint(last, result.metrics, checkpoint.path)
            return finish_run(self, outcome, last_dir=last, filesystem=checkpoint.filesystem)

    def _worker_count(self) -> int | tuple[int, int]:
        """``num_workers``, or the elastic range ``(num_workers, max_workers)``."""
        args = self.args
        if args.max_workers is not None and args.max_workers > args.num_workers:
            return (args.num_workers, args.max_workers)
        return args.num_workers

    @classmethod
    def _shared_table(cls, data: Any, spec: DatasetSpec) -> list[Any]:
        """An in-memory training dataset as Arrow tables in Ray's object store (object refs): the workers read
        every row zero-copy, one copy per node. A lazy Ray Dataset is read once here, in a fixed order."""
        import pyarrow as pa
        import ray

        if isinstance(data, pa.Table):
            return [ray.put(data.select(spec.columns))]
        data = cls._as_ray(data, spec)
        data.context.execution_options.preserve_order = True  # the same rows in the same order on a rerun
        return data.to_arrow_refs()

    @staticmethod
    def _as_ray(data: Any, spec: DatasetSpec) -> Any:
        import pyarrow as pa
        import ray.data

        if isinstance(data, pa.Table):
            data = ray.data.from_arrow(data.select(spec.columns))
        else:
            data = data.select_columns(spec.columns)
        data.context.enable_progress_bars = False  # every worker reads its shard once at start
        return data

    # ------------------------------------------------------------------ evaluation in this process
    def evaluate(self) -> dict[str, float]:
        """Evaluation loss on the eval datasets and the evaluator's metrics, in this process.

        Example:
            >>> trainer.evaluate()  # doctest: +SKIP
            {'eval_loss': 0.41, 'eval_dev_ndcg@10': 0.73, ...}
        """
        from raycross.training.evaluate import autocast_for, evaluate_model
        from raycross.training.tables import Shard

        shards = {}
        for name, spec in self.eval_specs.items():
            table = to_arrow(self._eval_data[name]).select(spec.columns)
            shards[name] = Shard(table, spec.input_columns, spec.label_column)
        return evaluate_model(
            self.model, shards, self.eval_losses, self.args.per_device_eval_batch_size, self.evaluator,
            single_eval=self.single_eval, quiet_losses=[*self.losses.values(), *self.eval_losses.values()],
            prompts=self.args.prompts,
            autocast=autocast_for(self.args.bf16, self.args.fp16, self.model.device.type),
            compute_metrics=self.compute_metrics,
        )

    def _reinit_model(self) -> None:
        """A fresh model from ``model_init`` (seeded with ``args.seed``), put into every loss (as 6.2 does)."""
        from raycross.training.loop import set_seed

        set_seed(self.args.seed)
        model = _call_model_init(self.model_init)
        for loss in {id(l): l for l in [*self.losses.values(), *self.eval_losses.values()]}.values():
            if hasattr(loss, "model"):
                loss.model = model
        self.model = model
        _prepare_adapter(model, _check_adapter(model, self.args))


def _call_model_init(model_init: Callable[..., Any], trial: Any = None) -> Any:
    """``model_init()`` or ``model_init(trial)`` (transformers' rule: by the number of parameters)."""
    import inspect

    takes_trial = len(inspect.signature(model_init).parameters) == 1
    model = model_init(trial) if takes_trial else model_init()
    if model is None:
        raise RuntimeError("model_init should not return None.")
    return model


def _check_optimizers(optimizers: Any, optimizer_cls_and_kwargs: Any, args: CrossEncoderTrainingArguments) -> tuple:
    """Validate ``optimizers`` / ``optimizer_cls_and_kwargs`` (transformers' rules) before any worker starts."""
    if not (isinstance(optimizers, (tuple, list)) and len(optimizers) == 2):
        raise TypeError(f"optimizers: expected a (optimizer, lr_scheduler) tuple, found {optimizers!r:.80}")
    optimizer, scheduler = optimizers
    if optimizer is not None and optimizer_cls_and_kwargs is not None:
        raise RuntimeError("Passing both `optimizers` and `optimizer_cls_and_kwargs` arguments is incompatible.")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizers[0]: expected a torch.optim.Optimizer or None, found {type(optimizer).__name__}")
    if (optimizer is not None or scheduler is not None) and args.num_workers > 0:
        raise ValueError("optimizers: ready-made optimizer/scheduler objects work in-process only (num_workers=0); "
                         "with Ray workers pass optimizer_cls_and_kwargs=(cls, kwargs) (and lr_scheduler_type)")
    if optimizer_cls_and_kwargs is not None:
        if not (isinstance(optimizer_cls_and_kwargs, (tuple, list)) and len(optimizer_cls_and_kwargs) == 2
                and isinstance(optimizer_cls_and_kwargs[0], type) and isinstance(optimizer_cls_and_kwargs[1], dict)):
            raise TypeError("optimizer_cls_and_kwargs: expected (optimizer class, dict of kwargs), found "
                            f"{optimizer_cls_and_kwargs!r:.80}")
        optimizer_cls_and_kwargs = (optimizer_cls_and_kwargs[0], dict(optimizer_cls_and_kwargs[1]))
    return (optimizer, scheduler), optimizer_cls_and_kwargs


def _check_adapter(model: Any, args: CrossEncoderTrainingArguments) -> Any:
    """The peft config of ``args.lora_config``, checked against the model (None without one)."""
    from raycross import adapters

    if args.lora_config is None:
        return None
    if getattr(model, "is_pooled", False):
        raise ValueError("lora_config: LoRA adapters apply to sequence-classification and causal-LM rerankers; this "
                         "model is a Transformer + Pooling + Dense module chain (train it without lora_config)")
    if model.has_adapter:
        raise ValueError(
            f"lora_config: the model already has the adapter {model.active_adapter()!r}; train it as it is "
            "(leave lora_config unset) or remove it first (merge_and_unload / delete_adapter)"
        )
    config = adapters.as_lora_config(args.lora_config, "lora_config")
    adapters.check_target_modules(config, model.hf_model, "lora_config.target_modules")
    return config


def _prepare_adapter(model: Any, lora_config: Any) -> None:
    """Add the checked LoRA adapter, or make an existing adapter and its head trainable."""
    from raycross import adapters

    if lora_config is not None:
        model.add_adapter(lora_config)
    elif model.has_adapter:
        adapters.set_trainable(model.hf_model, True)


def _count_and_sample(dataset: Any) -> tuple[int, dict[str, Any] | None]:
    rows = dataset.take(1)
    return dataset.count(), (dict(rows[0]) if rows else None)

