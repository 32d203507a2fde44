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

    Returns the mined dataset, or the output directory when ``mining.output_path`` is set.

    Example:
        >>> mined = mine(spec.mining, train_dataset, spec.data.corpus)  # doctest: +SKIP
    """
    kwargs = dict(mining.options)
    model = mining.model.resolve("mining.model")
    if mining.cross_encoder is not None:
        kwargs["cross_encoder"] = mining.cross_encoder.resolve("mining.cross_encoder")
    texts = load_corpus(corpus)
    if texts is not None:
        kwargs["corpus"] = texts
    logger.info("mining hard negatives with %s for %d rows%s", model, len(dataset),
                f" against a corpus of {len(texts)} texts" if texts is not None else "")
    return mining_function()(dataset, model, **kwargs)


def add_teacher_scores(teacher: TeacherSpec | dict[str, Any], dataset: Any):
    """Label every row with the teacher's scores of (query, document_i) for each document of the row.

    The first input column is the query; the others hold a document or a list of documents. The label
    column (``teacher.label_column``, default ``scores``) gets the list of scores: what MarginMSELoss,
    ListNet and the other distillation losses take.

    Example:
        >>> dataset = add_teacher_scores(TeacherSpec.parse({"model": "teacher-dir"}), mined)  # doctest: +SKIP
    """
    import numpy as np
    import torch

    from raycross.model import CrossEncoder

    if not isinstance(teacher, TeacherSpec):
        teacher = TeacherSpec.parse(teacher)
    inputs, existing = split_columns(dataset.column_names)
    if existing is not None:
        raise ConfigError("teacher", f"the training data already has a label column {existing!r}; "
                                     "drop it (data.train.columns) or remove the teacher section")
    if len(inputs) < 2:
        raise ConfigError("teacher", f"teacher scoring needs a query column and document column(s), found {inputs}")
    pairs, sizes = [], []
    for row in dataset.select_columns(inputs).to_list():
        docs = []
        for column in inputs[1:]:
            value = row[column]
            docs.extend(value if isinstance(value, list) else [value])
        pairs.extend((row[inputs[0]], d) for d in docs)
        sizes.append(len(docs))
    model = CrossEncoder(teacher.model.resolve("teacher.model"))
    activation = None if teacher.apply_activation else torch.nn.Identity()
    logger.info("scoring %d pairs with the teacher %s", len(pairs), model.model_name_or_path)
    scores = np.asarray(model.predict(pairs, batch_size=teacher.batch_size, activation_fn=activation,
                                      show_progress_bar=False), dtype=np.float64)
    if scores.ndim != 1:
        raise ConfigError("teacher.model", f"the teacher must have 1 label, it returned scores of shape {scores.shape}")
    offsets = np.cumsum([0, *sizes])
    labels = [scores[offsets[i]: offsets[i + 1]].tolist() for i in range(len(sizes))]
    return dataset.add_column(teacher.label_column, labels)


def prepare_training_data(spec: RunSpec) -> tuple[Any, Any]:
    """(train, eval) datasets of a train/tune config: loaded, then mined and teacher-scored when configured.

    Mined rows streamed to ``mining.output_path`` are trained from those files (or loaded, for a teacher).

    Example:
        >>> train, eval_ = prepare_training_data(parse_config(config, "train"))  # doctest: +SKIP
    """
    train, eval_ = load_train_data(spec.data)
    if spec.mining is not None:
        if isinstance(train, dict):
            raise ConfigError("mining", "mining applies to a single training dataset; data.train holds several")
        train = mine(spec.mining, train, spec.data.corpus)
        if isinstance(train, (str, os.PathLike)):  # streamed to parquet files: train from them
            logger.info("mined data written to %s", train)
            train = str(train)
            if spec.teacher is not None:
                train = SourceSpec.parse({"path": train}, "mining.output_path").load()
    if spec.teacher is not None:
        if isinstance(train, dict):
            raise ConfigError("teacher", "teacher scoring applies to a single training dataset")
        train = add_teacher_scores(spec.teacher, train)
    return train, eval_
