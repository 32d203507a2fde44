"""Training data from a parsed config: load the sources, mine hard negatives (``mining``), label with a
teacher (``teacher``). One pipeline for ``raycross train`` and ``raycross tune``.

Example:
    >>> spec = parse_config({"model": {"name_or_path": "m"}, "loss": {"name": "MSELoss"}, "training": {"output_dir": "o"},
    ...                      "data": {"train": {"bundled": "wordnet-mini/train.parquet"}}}, "train")  # doctest: +SKIP
    >>> train, eval_ = prepare_training_data(spec)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from raycross.config.errors import ConfigError
from raycross.config.sources import SourceSpec
from raycross.config.spec import DataSpec, MiningSpec, RunSpec, TeacherSpec, mining_function
from raycross.data import split_columns

logger = logging.getLogger("raycross.config")


def load_train_data(data: DataSpec) -> tuple[Any, Any]:
    """The training dataset (or {name: dataset}) and the eval dataset (or None) of `data`.

    Example:
        >>> train, eval_ = load_train_data(DataSpec.parse({"train": {"bundled": "wordnet-mini/train.parquet"}}))
        >>> train.num_rows, eval_
        (3000, None)
    """
    if isinstance(data.train, dict):
        train = {name: source.load() for name, source in data.train.items()}
    else:
        train = data.train.load()
    return train, data.eval.load() if data.eval is not None else None


def load_corpus(source: SourceSpec | None) -> list[str] | None:
    """The mining corpus texts of `data.corpus` (its single column, or its `text` column), or None.

    Example:
        >>> len(load_corpus(SourceSpec.parse({"bundled": "wordnet-mini/corpus.parquet", "limit": 7}, "data.corpus")))
        7
    """
    if source is None:
        return None
    ds = source.load()
    if len(ds.column_names) == 1:
        column = ds.column_names[0]
    elif "text" in ds.column_names:
        column = "text"
    else:
        raise ConfigError(f"{source.key}.columns", f"select the text column: found columns {ds.column_names}")
    texts = ds[column]
    if not all(isinstance(t, str) for t in texts):
        raise ConfigError(source.key, f"column {column!r} must hold strings")
    return texts


def mine(mining: MiningSpec, dataset: Any, corpus: SourceSpec | None = None):
    """Run ``mine_hard_negatives`` on `dataset` with the `mining` section and the corpus source.

    Returns the mined dataset, or the output directory when ``mining.output_path`` is set (a complete output
    of an earlier run there is reused, not mined again).

    Example:
        >>> mined = mine(spec.mining, train_dataset, spec.data.corpus)  # doctest: +SKIP
    """
    kwargs = dict(mining.options)
    out = kwargs.get("output_path")
    if out is not None:
        from raycross.mining.output import mined_output_complete

        if mined_output_complete(out):  # e.g. `raycross score`, then `raycross train` with the same config
            logger.info("reusing the mined rows in %s (a finished mining run; delete the directory to mine again)", out)
            return out
    model = mining.model.resolve("mining.model")
    if mining.cross_encoder is not None:
        kwargs["cross_encoder"] = mining.cross_encoder.resolve("mining.cross_encoder")
    texts = load_corpus(corpus)
    if texts is not None:
        kwargs["corpus"] = texts
    logger.info("mining hard negatives with %s for %d rows%s", model, len(dataset),
                f" against a corpus of {len(texts)} texts" if texts is not None else "")
    return mining_function()(dataset, model, **kwargs)


def add_teacher_scores(teacher: TeacherSpec | dict[str, Any], dataset: Any,
                       output_path: str | os.PathLike | None = None) -> str:
    """Label every row with the teacher's scores of (query, document_i) for each document of the row, with
    :func:`raycross.score_with_teacher` (an actor pool or this process, streamed to parquet, resumable).

    The first input column is the query; the others hold a document or a list of documents. The label
    column (``teacher.label_column``, default ``scores``) gets the list of scores (one float for
    (query, document) rows): what MSELoss, MarginMSELoss, ListNet and the other distillation losses take.
    Rows that already carry labels are refused unless ``teacher.replace_labels`` is true.

    Returns:
        The directory of the scored parquet files (``output_path``, else ``teacher.output_path``).

    Example:
        >>> scored = add_teacher_scores({"model": "teacher-dir"}, mined, "out/teacher-scores")  # doctest: +SKIP
    """
    from raycross.scoring import score_with_teacher
    from raycross.scoring.score import open_rows

    if not isinstance(teacher, TeacherSpec):
        teacher = TeacherSpec.parse(teacher)
    output_path = output_path or teacher.output_path
    if output_path is None:
        raise ConfigError("teacher.output_path", "required: the directory of the scored parquet files")
    inputs, existing = split_columns(open_rows(dataset).schema.names)
    if existing is not None and not teacher.replace_labels:
        raise ConfigError("teacher", f"the training data already has a label column {existing!r}; drop it "
                                     "(data.train.columns) or set teacher.replace_labels: true")
    if len(inputs) < 2:
        raise ConfigError("teacher", f"teacher scoring needs a query column and document column(s), found {inputs}")
    return score_with_teacher(
        dataset, teacher.model.resolve("teacher.model"), output_path, batch_size=teacher.batch_size,
        apply_activation=teacher.apply_activation, label_column=teacher.label_column, chunk_rows=teacher.chunk_rows,
        execution=teacher.execution, num_workers=teacher.num_workers, use_gpu=teacher.use_gpu,
    )


def teacher_output_path(spec: RunSpec) -> str:
    """Where a run's teacher scores go: ``teacher.output_path`` (required by ``raycross score``), else
    ``<training.output_dir>/teacher-scores`` (a rerun of the same run reuses them).

    Example:
        >>> teacher_output_path(spec)  # doctest: +SKIP
        '/runs/distill/teacher-scores'
    """
    if spec.teacher.output_path is not None:
        return spec.teacher.output_path
    return str(Path(spec.training.output_dir).expanduser().resolve() / "teacher-scores")


def training_rows(spec: RunSpec, train: Any) -> Any:
    """`train` mined (``mining``) and teacher-scored (``teacher``) as the config says; parquet directories
    where a step streamed its output there.

    Example:
        >>> rows = training_rows(spec, spec.data.train.load())  # doctest: +SKIP
    """
    if spec.mining is not None:
        if isinstance(train, dict):
            raise ConfigError("mining", "mining applies to a single training dataset; data.train holds several")
        train = mine(spec.mining, train, spec.data.corpus)
        if isinstance(train, (str, os.PathLike)):  # streamed to parquet files: train (or score) from them
            logger.info("mined data written to %s", train)
            train = str(train)
    if spec.teacher is not None:
        if isinstance(train, dict):
            raise ConfigError("teacher", "teacher scoring applies to a single training dataset")
        train = add_teacher_scores(spec.teacher, train, teacher_output_path(spec))
    return train


def prepare_training_data(spec: RunSpec) -> tuple[Any, Any]:
    """(train, eval) datasets of a train/tune config: loaded, then mined and teacher-scored when configured.

    Mined rows streamed to ``mining.output_path`` and teacher scores (always parquet files) are trained from
    those files.

    Example:
        >>> train, eval_ = prepare_training_data(parse_config(config, "train"))  # doctest: +SKIP
    """
    train, eval_ = load_train_data(spec.data)
    return training_rows(spec, train), eval_
