"""Teacher scoring for distillation: every (query, document) of every row scored by a teacher, streamed to
parquet chunk by chunk, on Ray Data actor pools (GPU when present) or in this process; a rerun skips the
chunks already written.

Row shapes (the first input column is the query, every other input column holds a document or a list):

=================================  ==================================  ============================
rows                               label column written                distillation loss
=================================  ==================================  ============================
(query, document) pairs            ``score``: one float                MSELoss
(query, positive, neg_1..neg_n)    ``scores``: [s(q, pos), s(q, neg_i)..]  MarginMSELoss
(query, [doc_1..doc_k])            ``scores``: one float per document  ListNet, LambdaLoss, ...
=================================  ==================================  ============================

An existing label column (hard labels) is replaced by the teacher's scores.

Example:
    >>> path = score_with_teacher({"query": ["q"], "docs": [["a", "b"]]}, teacher_model, "scored/")  # doctest: +SKIP
    >>> CrossEncoderTrainer(student, args, train_dataset=path, loss=ListNetLoss(student))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from raycross.data import LABEL_COLUMNS, DatasetSpec, data_files, file_format, is_paths, split_columns, to_arrow
from raycross.scoring.chunks import Manifest, OutputDir, ParquetRows, TableRows
from raycross.scoring.teacher import Teacher

logger = logging.getLogger(__name__)

EXECUTIONS = ("auto", "ray", "local")


def score_with_teacher(
    dataset: Any,
    teacher: Any,
    output_path: str | os.PathLike,
    *,
    batch_size: int = 64,
    apply_activation: bool = False,
    label_column: str | None = None,
    chunk_rows: int = 2048,
    execution: Literal["auto", "ray", "local"] = "auto",
    num_workers: int | None = None,
    use_gpu: bool | None = None,
    show_progress_bar: bool | None = None,
    overwrite: bool = False,
) -> str:
    """Score every document of every row with `teacher` and write the rows with the scores as labels.

    Args:
        dataset: rows (HF Dataset, Ray Dataset, parquet/json/jsonl/csv paths, list of dicts, dict of
            columns, pandas): a query column first, then document columns (texts or lists of texts).
        teacher: a raycross CrossEncoder (any kind), a model directory / hub id, or a callable
            ``list[(query, document)] -> scores``.
        output_path: a directory; it receives ``part-00000.parquet``... (train on the directory).
        batch_size: pairs per teacher forward pass.
        apply_activation: scores after the model's activation (default False: raw logits).
        label_column: name of the written label column (default ``score`` for pairs, else ``scores``).
        chunk_rows: rows per output file: the unit of work, of progress and of resume.
        execution: "ray" (Ray Data actor pool), "local" (this process) or "auto" (the rule of
            ``mine_hard_negatives``: Ray when Ray is running or ``RAY_ADDRESS`` is set, or on big inputs on
            machines with several GPUs or many cores).
        num_workers: actors in the pool (default: the GPUs, else half the CPUs, at most 8).
        use_gpu: actors on GPUs (default: when the cluster has GPUs).
        show_progress_bar: a progress bar over rows (default: when logging at INFO).
        overwrite: delete a previous run's files in `output_path` first; by default a rerun with the same
            input and settings continues where it stopped, and other settings are an error.

    Returns:
        The output directory (a string), readable by the trainer and by any parquet reader.

    Example:
        >>> out = score_with_teacher("mined/", "teacher-dir", "scored/", batch_size=128)  # doctest: +SKIP
    """
    teacher = Teacher.create(teacher, batch_size, apply_activation)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows: expected an integer >= 1, found {chunk_rows!r}")
    if execution not in EXECUTIONS:
        raise ValueError(f"execution: expected one of {EXECUTIONS}, found {execution!r}")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1):
        raise ValueError(f"num_workers: expected an integer >= 1 or None, found {num_workers!r}")
    rows = open_rows(dataset)
    inputs, label_column, pair_rows = _plan_columns(rows, label_column)
    docs_per_row = _docs_in_first_row(rows, inputs)
    out = OutputDir(output_path)
    if overwrite:
        out.clear()

    mode = _choose_execution(execution, rows.num_rows * docs_per_row)
    manifest = Manifest(rows.fingerprint(), rows.num_rows, chunk_rows, inputs, label_column, teacher.describe(),
                        teacher.apply_activation)
    previous = out.read_manifest()
    if previous is not None:
        manifest.check_same(previous, out.path)
        manifest.staged = previous.staged
    elif any(out.path.glob("part-*.parquet")):
        raise ValueError(f"output_path={str(out.path)!r} holds part-*.parquet files of another run; pass an empty "
                         "directory or overwrite=True")
    out.path.mkdir(parents=True, exist_ok=True)
    if mode == "ray" and isinstance(rows, TableRows):
        rows = _staged(rows, out, manifest)  # actors read files, not the driver's memory
    out.write_manifest(manifest)

    done = out.done(manifest.num_chunks)
    pending = [i for i in range(manifest.num_chunks) if i not in done]
    job = _ChunkJob(inputs, label_column, pair_rows, chunk_rows, rows.num_rows, str(out.path))
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    done_rows = sum(job.size(i) for i in done)
    if done:
        logger.info("teacher scoring: %d of %d chunks already in %s; scoring the other %d",
                    len(done), manifest.num_chunks, out.path, len(pending))
    bar = tqdm(total=rows.num_rows, initial=done_rows, desc="Teacher scoring", unit="row", disable=not show_progress_bar)
    try:
        if pending and mode == "local":
            local_use_gpu = _local_gpu(use_gpu)
            loaded = teacher.load("cuda" if local_use_gpu else None)
            for chunk in pending:
                bar.update(job.run(rows, loaded, chunk))
        elif pending:
            _run_ray(job, rows, teacher, pending, num_workers, use_gpu, bar)
    finally:
        bar.close()
    logger.info("teacher scores of %d rows in %s (label column %r)", rows.num_rows, out.path, label_column)
    return str(out.path)


# ----------------------------------------------------------------------------- inputs
def open_rows(dataset: Any) -> TableRows | ParquetRows:
    """`dataset` as addressable rows: parquet files read by row group, anything else as one Arrow table.

    Example:
        >>> open_rows({"query": ["q"], "doc": ["d"]}).schema.names
        ['query', 'doc']
    """
    if is_paths(dataset):
        paths = data_files(dataset)  # checks existence, suffixes, one format; a directory expands to its files
        if file_format(paths) == "parquet":
            return ParquetRows(paths)
    # HF datasets stay memory-mapped; a Ray Dataset (a lazy pipeline: no stable row addresses) is read once
    return TableRows(to_arrow(dataset))


def _plan_columns(rows: TableRows | ParquetRows, label_column: str | None) -> tuple[list[str], str, bool]:
    inputs, existing = split_columns(rows.schema.names)
    if len(inputs) < 2:
        raise ValueError(f"dataset: teacher scoring needs a query column and at least one document column, found "
                         f"the input columns {inputs}")
    list_columns = [c for c in inputs if _is_list(rows.schema.field(c).type)]
    if inputs[0] in list_columns:
        raise ValueError(f"dataset: the first input column {inputs[0]!r} is the query: expected texts, found lists")
    for c in inputs:
        t = rows.schema.field(c).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or c in list_columns):
            raise TypeError(f"column {c!r}: expected texts or lists of texts, found {t}")
    pair_rows = len(inputs) == 2 and not list_columns
    name = label_column or ("score" if pair_rows else "scores")
    if name not in LABEL_COLUMNS:
        raise ValueError(f"label_column: expected one of {list(LABEL_COLUMNS)}, found {name!r}")
    if existing is not None:
        logger.info("teacher scoring: the label column %r is replaced by the teacher's scores (%r)", existing, name)
    return inputs, name, pair_rows


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _docs_in_first_row(rows: TableRows | ParquetRows, inputs: list[str]) -> int:
    if rows.num_rows == 0:
        raise ValueError("dataset is empty: 0 rows to score")
    first = rows.read(0, 1).select(inputs).to_pylist()[0]
    DatasetSpec.build("dataset", inputs, -1, first).check_sample()  # texts or lists of texts, nothing else
    return sum(len(v) if isinstance(v, list) else 1 for k, v in first.items() if k != inputs[0])


def _staged(rows: TableRows, out: OutputDir, manifest: Manifest) -> ParquetRows:
    """The rows as parquet files under the state directory (once; reused by reruns of the same input)."""
    import pyarrow.parquet as pq

    folder = out.state / "input"
    expected = [str(folder / f"input-{i:05d}.parquet") for i in range(manifest.num_chunks)]
    if manifest.staged != expected or not all(Path(p).is_file() for p in expected):
        folder.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(expected):
            start = i * manifest.chunk_rows
            tmp = Path(path).with_name(f".{Path(path).name}.tmp")
            pq.write_table(rows.read(start, min(start + manifest.chunk_rows, rows.num_rows)), tmp)
            os.replace(tmp, path)
        manifest.staged = expected
    return ParquetRows(expected)


# ----------------------------------------------------------------------------- one chunk
class _ChunkJob:
    """Reads chunk i, expands its rows into pairs, scores them, writes ``part-i.parquet``."""

    def __init__(self, inputs: list[str], label_column: str, pair_rows: bool, chunk_rows: int, num_rows: int,
                 out: str) -> None:
        self.inputs, self.label_column, self.pair_rows = inputs, label_column, pair_rows
        self.chunk_rows, self.num_rows, self.out = chunk_rows, num_rows, out

    def size(self, chunk: int) -> int:
        return min(self.chunk_rows, self.num_rows - chunk * self.chunk_rows)

    def run(self, rows: TableRows | ParquetRows, teacher: Teacher, chunk: int) -> int:
        start = chunk * self.chunk_rows
        table = rows.read(start, start + self.size(chunk)).select(self.inputs)
        pairs, offsets = expand_pairs(table, self.inputs, first_row=start)
        scores = teacher.score(pairs)
        if self.pair_rows:
            labels = pa.array(scores, type=pa.float32())
        else:
            labels = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pa.array(scores, type=pa.float32()))
        OutputDir(self.out).write_part(chunk, table.append_column(self.label_column, labels))
        return table.num_rows


def expand_pairs(table: pa.Table, inputs: list[str], first_row: int = 0) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(query, document) for every document of every row (documents in column order, lists flattened) and
    the row offsets into that list.

    Example:
        >>> t = pa.table({"q": ["q1"], "pos": ["p"], "negs": [["n1", "n2"]]})
        >>> expand_pairs(t, ["q", "pos", "negs"])
        ([('q1', 'p'), ('q1', 'n1'), ('q1', 'n2')], array([0, 3]))
    """
    queries = table.column(inputs[0]).to_pylist()
    columns = [table.column(c).to_pylist() for c in inputs[1:]]
    pairs: list[tuple[str, str]] = []
    offsets = np.zeros(len(queries) + 1, dtype=np.int64)
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise ValueError(f"row {first_row + i}, column {inputs[0]!r}: expected a text, found {query!r:.40}")
        for name, column in zip(inputs[1:], columns):
            value = column[i]
            if isinstance(value, str):
                pairs.append((query, value))
            elif isinstance(value, list) and all(isinstance(d, str) for d in value):
                pairs.extend((query, d) for d in value)
            else:
                raise ValueError(f"row {first_row + i}, column {name!r}: expected a text or a list of texts, "
                                 f"found {value!r:.40}")
        offsets[i + 1] = len(pairs)
    return pairs, offsets


# ----------------------------------------------------------------------------- runners
def _choose_execution(execution: str, n_pairs: int) -> str:
    from raycross.mining.mine import _choose_execution as choose

    return choose(execution, False, n_pairs)


def _local_gpu(use_gpu: bool | None) -> bool:
    import torch

    if use_gpu and not torch.cuda.is_available():
        raise ValueError("use_gpu=True but this process sees no CUDA device")
    return bool(torch.cuda.is_available() if use_gpu is None else use_gpu)


class _ChunkActor:
    """Ray Data actor: {"chunk"} -> {"chunk", "rows"}; loads the teacher once, writes the part files itself."""

    def __init__(self, job: _ChunkJob, paths: list[str], teacher: Teacher, device: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job, self.rows = job, ParquetRows(paths)
        self.teacher = teacher.load(None if device == "cpu" else device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chunks = batch["chunk"].tolist()
        sizes = [self.job.run(self.rows, self.teacher, int(c)) for c in chunks]
        return {"chunk": np.asarray(chunks), "rows": np.asarray(sizes)}


def _run_ray(job: _ChunkJob, rows: ParquetRows, teacher: Teacher, pending: list[int], num_workers: int | None,
             use_gpu: bool | None, bar: Any) -> None:
    import ray
    import ray.data

    from raycross.mining.blocks import worker_threads
    from raycross.mining.distributed import Resources

    if not ray.is_initialized():
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from raycross.ray_connect import init_ray

        init_ray()
    res = Resources.detect(num_workers, use_gpu, cpus_per_worker=1.0)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # our bar counts rows
    try:
        ds = ray.data.from_items([{"chunk": c} for c in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            _ChunkActor, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs={"job": job, "paths": rows.paths, "teacher": teacher, "device": res.device,
                                   "threads": worker_threads(res.num_workers)},
            **res.remote_args(1.0),
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            bar.update(int(batch["rows"].sum()))
    finally:
        ctx.enable_progress_bars = saved
