"""The outcome of a sweep: one row per trial (status, parameters, metric, steps, time), the CSV file, the
printed table, and the best trial's model exported as a CrossEncoder directory.

A trial's metric is the best value over its evaluations (``best_step`` is where it was reached);
``steps`` and ``evaluations`` are how far it trained (from the trainer's own record, which spans the
attempts of a resumed trial; a trial with workers may get past the evaluation it was stopped at while it
is torn down). Status: ``completed``, ``stopped early`` (by the scheduler), ``failed``
(with its error), ``interrupted`` (the sweep stopped before the trial ended: ``resume=True`` continues it),
``not started``. The baseline row (``trial = base model``) holds the evaluation of the
untrained model when the sweep was asked for it.

Example:
    >>> rows = [{"trial": "t1", "status": "completed", "learning_rate": 2e-05, "eval_ndcg": 0.81234, "steps": 60}]
    >>> print(format_table(rows, ["trial", "status", "learning_rate", "eval_ndcg", "steps"]))
    trial  status     learning_rate  eval_ndcg  steps
    t1     completed  2e-05          0.8123     60
"""

from __future__ import annotations

import csv
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raycross.tuning.trial import read_trial_file

logger = logging.getLogger(__name__)

COMPLETED, STOPPED, FAILED, INTERRUPTED, NOT_STARTED, BASELINE = (
    "completed", "stopped early", "failed", "interrupted", "not started", "baseline")


@dataclass(eq=False)
class SweepResult(Mapping):
    """What :func:`raycross.tune.tune_cross_encoder` returns; also a read-only mapping of :meth:`to_dict`
    (what ``raycross tune`` prints as JSON).

    Attributes:
        rows: one dict per trial (see :attr:`columns`), best first; failed and unstarted trials last.
        columns: column order of the table and the CSV file.
        csv_path: the CSV file of `rows`.
        metric, mode: the optimized key and direction.
        best_trial: id of the trial with the best metric (None when no trial produced it).
        best_params: its parameters.
        best_metric: its best metric value.
        best_step: the step of that evaluation.
        best_checkpoint: the trainer checkpoint of that evaluation.
        best_model_dir: where that model was exported (loads with ``raycross.CrossEncoder``), or None.
        experiment_path: the Ray Tune experiment directory (pass ``resume=True`` to continue it).
        baseline: the base model's evaluation, when computed.
    """

    rows: list[dict[str, Any]]
    columns: list[str]
    csv_path: str | None
    metric: str
    mode: str
    best_trial: str | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    best_model_dir: str | None = None
    experiment_path: str = ""
    baseline: dict[str, float] | None = None

    @property
    def trial_rows(self) -> list[dict[str, Any]]:
        """The rows of real trials (the baseline row excluded)."""
        return [r for r in self.rows if r.get("status") != BASELINE]

    @property
    def num_failed(self) -> int:
        return sum(1 for r in self.rows if r.get("status") == FAILED)

    @property
    def num_stopped_early(self) -> int:
        return sum(1 for r in self.rows if r.get("status") == STOPPED)

    def table(self) -> str:
        """The results as an aligned text table (what the sweep logs at the end)."""
        shown = [c for c in self.columns if c not in ("checkpoint", "trial_dir")]
        return format_table(self.rows, shown)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (what ``raycross tune`` prints)."""
        return {
            "metric": self.metric, "mode": self.mode, "best_trial": self.best_trial, "best_params": self.best_params,
            "best_metric": self.best_metric, "best_step": self.best_step, "best_checkpoint": self.best_checkpoint,
            "best_model_dir": self.best_model_dir, "csv_path": self.csv_path, "experiment_path": self.experiment_path,
            "num_trials": len(self.trial_rows), "num_failed": self.num_failed,
            "num_stopped_early": self.num_stopped_early, "baseline": self.baseline, "table": self.rows,
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


# --------------------------------------------------------------------------------------------- rows
def short_error(error: Any) -> str:
    """The last ``SomeError: message`` line of an exception (Ray wraps trial errors with tracebacks).

    Example:
        >>> short_error(RuntimeError("Traceback ...\\n  File x\\nValueError: bad value\\n"))
        'ValueError: bad value'
    """
    if error is None:
        return ""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:", line):
            return line[:300]
    text = f"{type(error).__name__}: {lines[-1] if lines else ''}"
    return text[:300]


def _clean(value: Any) -> Any:
    """numpy/pandas scalars -> Python; NaN -> None."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def trial_row(result: Any, param_keys: list[str], metric: str, mode: str,
              config: dict[str, Any] | None = None, tune_status: str | None = None) -> dict[str, Any]:
    """One table row from a Ray Tune ``Result``; `config` and `tune_status` come from the trial record
    (a trial that never reported has no config in its result)."""
    trial_dir = str(result.path)
    metrics = result.metrics or {}
    row: dict[str, Any] = {"trial": metrics.get("trial_id") or Path(trial_dir).name.removeprefix("trial_")}
    config = result.config or config or {}
    row.update({key: _clean(config.get(key)) for key in param_keys})
    # the trainer's own record spans every attempt of a resumed trial; Tune's progress only the last one
    history = trainer_history(trial_dir, metric) or _history(result, metric)
    best = None
    if history:  # ties go to the later evaluation, as in the trainer's checkpoint rotation (it keeps that one)
        sign = 1.0 if mode == "max" else -1.0
        best = max(history, key=lambda h: (sign * h[metric], h.get("step") or 0))
    info = read_trial_file(trial_dir)
    if result.error is not None:
        status = FAILED
    elif info.get("completed"):  # the trial returned: the scheduler let it finish
        status = COMPLETED
    elif tune_status in ("PENDING", "PAUSED", "RUNNING"):
        status = INTERRUPTED if history else NOT_STARTED
    elif history:
        status = STOPPED
    else:
        status = NOT_STARTED
    last = history[-1] if history else {}
    steps = info.get("global_step") or last.get("step")
    row.update({
        "status": status,
        metric: _clean(best[metric]) if best else None,
        "best_step": _clean(best.get("step")) if best else None,
        "steps": _clean(steps),
        "evaluations": len(history),
        "time_s": round(float(metrics.get("time_total_s") or 0.0), 1),
        "error": short_error(result.error) if result.error is not None else "",
        "checkpoint": (best or {}).get("checkpoint_path") or "",
        "trial_dir": trial_dir,
    })
    return row


def trainer_history(trial_dir: str, metric: str) -> list[dict[str, Any]]:
    """The trial's evaluations from its trainer state (final model, else latest checkpoint), each with
    ``step`` and ``checkpoint_path`` (when that checkpoint is still on disk); [] when not found locally."""
    from raycross.training.checkpoints import list_checkpoints, read_json
    from raycross.tuning.trial import TRAIN_SUBDIR

    run_dir = Path(trial_dir) / TRAIN_SUBDIR
    if "://" in trial_dir or not run_dir.is_dir():
        return []
    checkpoints = dict(list_checkpoints(run_dir))
    candidates = [run_dir / "trainer_state.json"]  # a completed run's final state, else the latest checkpoint's
    candidates += [checkpoints[s] / "trainer_state.json" for s in sorted(checkpoints, reverse=True)]
    state_file = next((c for c in candidates if c.is_file()), None)
    if state_file is None:
        return []
    try:
        log_history = read_json(state_file).get("log_history") or []
    except (OSError, ValueError):
        return []
    history = []
    for entry in log_history:
        if entry.get(metric) is None:
            continue
        step = int(entry.get("step", 0))
        record = {k: _clean(v) for k, v in entry.items()}
        record["checkpoint_path"] = str(checkpoints[step]) if step in checkpoints else ""
        history.append(record)
    return history


def _history(result: Any, metric: str) -> list[dict[str, Any]]:
    """The trial's evaluation reports (progress.csv rows that hold the metric), in order."""
    frame = None
    try:
        frame = result.metrics_dataframe
    except Exception:  # noqa: BLE001 - a trial that never reported has no progress file
        frame = None
    if frame is None or len(frame) == 0 or metric not in frame.columns:
        last = result.metrics or {}
        return [dict(last)] if last.get(metric) is not None else []
    rows = []
    for record in frame.to_dict("records"):
        value = _clean(record.get(metric))
        if value is not None:
            rows.append({k: _clean(v) for k, v in record.items()})
    return rows


def order_rows(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Best metric first; rows without the metric (failed, not started) last, in their original order."""
    scored = [r for r in rows if r.get(metric) is not None]
    others = [r for r in rows if r.get(metric) is None]
    scored.sort(key=lambda r: r[metric], reverse=mode == "max")
    return scored + others


# --------------------------------------------------------------------------------------------- output
def format_value(value: Any) -> str:
    """A table cell: floats with 4 decimals (or 3 significant digits when tiny or huge), None empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """An aligned plain-text table (two spaces between columns)."""
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], columns: list[str], path: str | Path) -> str:
    """Write the rows as CSV (header = `columns`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return str(path)


# --------------------------------------------------------------------------------------------- export
def export_model(checkpoint: str, export_dir: str | Path, filesystem: Any = None) -> str:
    """Load the model of a trainer checkpoint (a local directory, or a path on `filesystem`) and save it
    as a clean CrossEncoder directory (weights, tokenizer, sentence-transformers markers).

    Example:
        >>> export_model("outputs/sweep/trial_x/train/checkpoint-60", "outputs/sweep/best_model")  # doctest: +SKIP
    """
    from raycross.model import CrossEncoder

    export_dir = Path(export_dir)
    if filesystem is None and Path(checkpoint).is_dir():
        model = CrossEncoder(str(checkpoint), device="cpu")
    else:
        from ray.tune import Checkpoint

        local = Path(tempfile.mkdtemp(prefix="raycross-best-"))
        try:
            Checkpoint(path=checkpoint, filesystem=filesystem).to_directory(str(local))
            model = CrossEncoder(str(local), device="cpu")
        finally:
            shutil.rmtree(local, ignore_errors=True)
    if export_dir.exists():
        shutil.rmtree(export_dir)
    model.save_pretrained(str(export_dir))
    logger.info("Exported the best trial's model (%s) to %s", checkpoint, export_dir)
    return str(export_dir)
