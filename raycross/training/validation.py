"""Driver-side checks, run before any worker starts: datasets vs losses vs the model, dict keys, batch
sizes, samplers, the best-model metric, resources. Every failure is a ValueError/TypeError that names
the argument, what was expected and what was found.

Example:
    >>> import pyarrow as pa
    >>> spec = DatasetSpec.from_table("train", pa.table({"q": ["a"], "d": ["b"], "label": [1]}))
    >>> spec.input_columns, spec.label_column, spec.num_rows
    (['q', 'd'], 'label', 1)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raycross.data import DatasetSpec, is_dataset_dict
from raycross.data.spec import where as dataset_label  # how errors name a dataset
from raycross.training.arguments import BatchSamplers, CrossEncoderTrainingArguments, IntervalStrategy

logger = logging.getLogger(__name__)


def normalize_metric(name: str) -> str:
    """``metric_for_best_model`` as a key of the evaluation metrics (``eval_`` prefixed)."""
    return name if name.startswith("eval_") else f"eval_{name}"


def as_named(data: Any, kind: str) -> tuple[dict[str, Any], bool]:
    """A dataset argument as {name: dataset} plus whether it was a single dataset."""
    if data is None:
        return {}, True
    rows_per_value = isinstance(data, Mapping) and data and all(
        isinstance(v, (list, tuple)) and v and isinstance(v[0], Mapping) for v in data.values()
    )  # {"name": [row dicts]}: a dict of datasets, not a dict of columns
    if rows_per_value or is_dataset_dict(data):
        if not all(isinstance(k, str) and k for k in data):
            raise TypeError(f"{kind}_dataset: dict keys must be non-empty strings (dataset names), found {list(data)}")
        return dict(data), False
    return {kind: data}, True


def resolve_losses(model: Any, loss: Any, train_names: list[str], single: bool) -> dict[str, Any]:
    """{dataset name: loss module}; checks dict losses against dict datasets (same keys)."""
    from torch import nn

    def build(value: Any, where: str) -> nn.Module:
        if isinstance(value, nn.Module):
            module = value
        elif callable(value):  # a loss class or factory taking the model
            module = value(model)
            if not isinstance(module, nn.Module):
                raise TypeError(f"{where}: the factory returned {type(module).__name__}, expected an nn.Module loss")
        else:
            raise TypeError(f"{where}: expected a loss module (or a callable model -> loss), found {type(value).__name__}")
        owner = getattr(module, "model", None)
        if owner is not None and owner is not model:
            raise ValueError(
                f"{where}: {type(module).__name__} was built for a different model object than the trainer's "
                "`model`; build the loss with the model you pass to the trainer"
            )
        return module

    if loss is None:
        from raycross.losses import BinaryCrossEntropyLoss, CrossEntropyLoss

        default = BinaryCrossEntropyLoss(model) if model.num_labels == 1 else CrossEntropyLoss(model)
        logger.info("No loss given: using %s (num_labels=%d)", type(default).__name__, model.num_labels)
        return {name: default for name in train_names}
    if isinstance(loss, Mapping):
        if single:
            raise ValueError(
                f"loss: a dict of losses (keys {sorted(loss)}) needs a dict of training datasets with the same "
                "keys, but train_dataset is a single dataset"
            )
        missing = sorted(set(train_names) - set(loss))
        extra = sorted(set(loss) - set(train_names))
        if missing or extra:
            raise ValueError(
                f"loss: the dict of losses must have the same keys as train_dataset {sorted(train_names)}; "
                f"missing {missing}, unexpected {extra}"
            )
        return {name: build(loss[name], f"loss[{name!r}]") for name in train_names}
    module = build(loss, "loss")
    return {name: module for name in train_names}


def check_dataset_against_loss(spec: DatasetSpec, loss: Any, model: Any, table: pa.Table | None) -> None:
    """Columns vs loss (the loss's own ``validate_columns``) and labels vs ``num_labels``."""
    where = dataset_label(spec.name)
    validate = getattr(loss, "validate_columns", None)
    if callable(validate):
        try:
            validate(spec.input_columns, spec.label_column, spec.sample_row)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where} (columns {spec.columns}) does not fit the loss: {err}") from None
    if spec.label_column is None or spec.label_column in spec.list_columns:
        return
    num_labels = class_count(spec, loss, model)
    if num_labels is None:
        return
    sample = spec.sample_row.get(spec.label_column)
    if not _is_int_label(spec):
        raise ValueError(
            f"{where}: {type(loss).__name__} with num_labels={num_labels} needs integer class labels in "
            f"[0, {num_labels}) in column {spec.label_column!r}, found {type(sample).__name__} {sample!r}"
        )
    if table is not None:
        column = table.column(spec.label_column)
        low, high = pc.min(column).as_py(), pc.max(column).as_py()
    else:
        low = high = int(sample)
    if low < 0 or high >= num_labels:
        first = ""
        if table is not None:
            outside = pc.or_(pc.less(column, 0), pc.greater_equal(column, num_labels))
            row = pc.index(outside, True).as_py()
            first = f" (first at row {row}: {column[row].as_py()!r})"
        raise ValueError(
            f"{where}: labels in column {spec.label_column!r} range over [{low}, {high}], but the model has "
            f"num_labels={num_labels} (class labels must be in [0, {num_labels})); load the model with "
            f"CrossEncoder(..., num_labels={high + 1}) or fix the labels{first}"
        )


def class_count(spec: DatasetSpec, loss: Any, model: Any) -> int | None:
    """The number of classes integer labels must fit (``num_labels``) when the loss trains classes, else None."""
    if spec.label_column is None or spec.label_column in spec.list_columns:
        return None
    num_labels = int(model.num_labels)
    wants_classes = type(loss).__name__ == "CrossEntropyLoss" or (num_labels > 1 and _is_int_label(spec))
    return num_labels if wants_classes else None


def check_dataset_rows(spec: DatasetSpec, loss: Any, model: Any, table: pa.Table, where: str | None = None) -> None:
    """Every row of `table` (see :class:`raycross.data.rows.RowChecker`): texts are strings, labels finite
    numbers within the classes. The error names the dataset, column, row and value."""
    from raycross.data.rows import RowChecker

    checker = RowChecker(where or dataset_label(spec.name), spec.input_columns, spec.label_column,
                         class_count(spec, loss, model))
    checker.check(table)


def _is_int_label(spec: DatasetSpec) -> bool:
    value = spec.sample_row.get(spec.label_column)
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_batching(spec: DatasetSpec, args: CrossEncoderTrainingArguments, table: pa.Table | None) -> None:
    """Enough rows for every worker; the sampler's needs (labels for GROUP_BY_LABEL)."""
    where = dataset_label(spec.name)
    world = args.world_size
    if spec.num_rows < world:
        raise ValueError(
            f"{where} has {spec.num_rows} row(s), fewer than the {world} workers (num_workers={args.num_workers}): "
            "every worker needs at least one row"
        )
    if args.dataloader_drop_last and spec.num_rows // world < args.per_device_train_batch_size:
        raise ValueError(
            f"per_device_train_batch_size={args.per_device_train_batch_size} with dataloader_drop_last=True: "
            f"{where} has only {spec.num_rows // world} row(s) per worker, so no full batch remains"
        )
    if args.batch_sampler is BatchSamplers.GROUP_BY_LABEL:
        if spec.label_column is None or spec.label_column in spec.list_columns:
            raise ValueError(
                f"batch_sampler='group_by_label' needs one scalar label per row, but {where} has "
                + ("no label column" if spec.label_column is None else f"list labels in {spec.label_column!r}")
            )
        if table is not None:
            counts = pc.value_counts(table.column(spec.label_column)).field("counts").to_numpy()
            if int((counts >= 2 * world).sum()) < 2:
                raise ValueError(
                    f"batch_sampler='group_by_label' needs at least 2 labels with 2+ rows per worker; {where} has "
                    f"{int((counts >= 2 * world).sum())} label(s) with at least {2 * world} rows"
                )


def expected_metric_keys(evaluator: Any, eval_names: list[str], single_eval: bool, num_labels: int) -> set[str] | None:
    """The evaluation metric keys the run will produce, or None when the evaluator's keys can't be known
    before it runs. Raycross evaluators are asked with dummy scores (no model involved)."""
    keys: set[str] = set()
    if eval_names:
        keys |= {"eval_loss"} if single_eval else {f"eval_{n}_loss" for n in eval_names}
    if evaluator is None:
        return keys
    if not getattr(evaluator, "supports_pairs", False):
        return None
    try:
        n = evaluator.num_pairs()
        shape = (n,) if num_labels == 1 else (n, num_labels)
        dummy = np.random.default_rng(0).random(shape)
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            metrics = evaluator.compute_metrics(dummy)
        finally:
            logging.disable(previous)
    except Exception:  # an evaluator that can't run on dummy scores: checked at the first evaluation
        return None
    return keys | {f"eval_{k}" for k in metrics}


def check_best_metric(args: CrossEncoderTrainingArguments, evaluator: Any, eval_names: list[str],
                      single_eval: bool, num_labels: int) -> str | None:
    """The normalized ``metric_for_best_model`` (``eval_...``) after checking the run will produce it."""
    if args.metric_for_best_model is None:
        return None
    metric = normalize_metric(args.metric_for_best_model)
    keys = expected_metric_keys(evaluator, eval_names, single_eval, num_labels)
    if keys is not None and metric not in keys:
        raise ValueError(
            f"metric_for_best_model={args.metric_for_best_model!r}: the evaluation will produce the keys "
            f"{sorted(keys) or '(none: no eval_dataset and no evaluator)'}, not {metric!r}"
        )
    if keys is None and metric == "eval_loss" and not eval_names:
        raise ValueError(f"metric_for_best_model={args.metric_for_best_model!r} is an evaluation loss, but there is no eval_dataset")
    return metric


def check_prompts(args: CrossEncoderTrainingArguments, train_names: list[str], eval_names: list[str],
                  single_train: bool) -> None:
    """A per-dataset ``prompts`` dict must name datasets (and needs datasets given as a dict)."""
    if not isinstance(args.prompts, dict):
        return
    if single_train and not eval_names:
        raise ValueError("prompts: a dict of dataset name -> prompt needs train_dataset as a dict of named datasets; "
                         "for one dataset give a single prompt string")
    names = sorted(set(train_names) | set(eval_names))
    unknown = sorted(set(args.prompts) - set(names))
    if unknown:
        raise ValueError(f"prompts: {unknown} are not dataset names; the datasets are {names}")


def check_losses_take_prompts(prompts: Any, losses: Mapping[str, Any]) -> None:
    """Every loss of a dataset with a training prompt must be able to apply it (before any worker starts)."""
    from raycross.losses._plan import check_takes_prompt
    from raycross.prompts import dataset_prompt

    for name, loss in losses.items():
        prompt = dataset_prompt(prompts, name)
        if prompt is not None:
            check_takes_prompt(loss, prompt)


def check_strategies(args: CrossEncoderTrainingArguments, has_eval_data: bool, has_evaluator: bool) -> None:
    if args.eval_strategy is not IntervalStrategy.NO and not (has_eval_data or has_evaluator):
        raise ValueError(
            f"eval_strategy={args.eval_strategy.value!r} needs an eval_dataset or an evaluator; found neither "
            "(set eval_strategy='no' or pass one)"
        )


def check_resources(args: CrossEncoderTrainingArguments, streamed: bool = False) -> None:
    """Without workers: a GPU asked for must exist. With workers: the Ray cluster must fit them (and, when
    data streams from Ray Data, leave Ray Data a CPU)."""
    import torch

    if args.num_workers == 0:
        if args.use_gpu and not torch.cuda.is_available():
            raise ValueError("use_gpu=True, but no CUDA GPU is visible to this process (num_workers=0)")
        return
    import ray

    if not ray.is_initialized():
        return  # TorchTrainer starts a local Ray; checked against it there
    total = ray.cluster_resources()
    per_worker = dict(args.resources_per_worker or {})
    per_worker.setdefault("CPU", 1)
    if args.use_gpu:
        per_worker.setdefault("GPU", 1)
    for resource, amount in per_worker.items():
        need = amount * args.num_workers
        have = total.get(resource, 0)
        if need > have:
            raise ValueError(
                f"num_workers={args.num_workers} x resources_per_worker {per_worker} needs {need:g} {resource}, "
                f"but the Ray cluster has {have:g} (use fractional resources, e.g. {{'CPU': 0.5}}, or fewer workers)"
            )
    if not streamed:
        return
    # Streamed data comes from Ray Data read tasks (1 CPU each) while the workers run: workers holding every
    # CPU starve them and the first batch never comes. An elastic run may grow to max_workers.
    workers = max(args.num_workers, args.max_workers or 0)
    left = total.get("CPU", 0) - per_worker["CPU"] * workers
    if left < 1:
        fit = (total.get("CPU", 0) - 1) / workers
        hint = f"resources_per_worker={{'CPU': {fit:g}}}" if fit > 0 else "fewer workers"
        raise ValueError(
            f"{workers} workers x resources_per_worker {per_worker} hold {per_worker['CPU'] * workers:g} of the Ray "
            f"cluster's {total.get('CPU', 0):g} CPU, leaving {max(left, 0):g} for Ray Data, whose tasks (1 CPU each) "
            f"feed the streamed data to the workers: training would wait forever for its first batch (use {hint}, "
            "or streaming=False)"
        )
