"""Terminal output of the command line: one verbosity switch, log lines that do not break progress bars,
no loader noise, a final summary table, and exit codes scripts can rely on.

Verbosity:
    - ``quiet``: warnings and errors only, no progress bars; the summary table at the end.
    - ``normal`` (default): raycross's progress lines and bars (log lines are written above the bars);
      third-party INFO chatter (faiss's CPU-feature probing, transformers' weight-load report and loading
      bars, Ray Data progress) is hidden.
    - ``verbose``: everything, with timestamps and logger names (for bug reports).

Exit codes (:data:`EXIT_CODES`): 0 success, 1 the run failed, 2 bad command line / config / input,
3 a needed optional component is missing, 130 interrupted (Ctrl-C).

Example:
    >>> configure_output("quiet")
    >>> print(summary_table("Quickstart", [("MAP", 0.49, 0.53)], ["metric", "before", "after"]))
    Quickstart
    metric  before  after
    ------  ------  ------
    MAP     0.4900  0.5300
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the run failed (an exception while working; rerun with --verbose for the traceback)",
    EXIT_USAGE: "bad command line, config or input (the message names the argument or key)",
    EXIT_UNAVAILABLE: "a component the command needs is not installed or not reachable",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
VERBOSITIES = ("quiet", "normal", "verbose")
# third-party loggers whose INFO lines are noise on a terminal
_NOISY = ("faiss", "faiss.loader", "transformers", "huggingface_hub", "datasets", "ray.data", "ray.train",
          "ray.tune", "urllib3", "filelock", "torch.distributed")


class TqdmHandler(logging.StreamHandler):
    """A logging handler that writes through ``tqdm.write``: a log line goes above any open progress bar
    instead of being mixed into it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - never lose a log line to the handler
            self.handleError(record)


def configure_output(verbosity: str = "normal", stream: Any = None) -> None:
    """Set up logging and progress bars for `verbosity` (see the module docstring).

    Example:
        >>> configure_output("verbose")
    """
    if verbosity not in VERBOSITIES:
        raise ValueError(f"verbosity: expected one of {VERBOSITIES}, found {verbosity!r}")
    stream = stream or sys.stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_raycross_console", False):
            root.removeHandler(handler)
    handler = TqdmHandler(stream)
    handler._raycross_console = True  # type: ignore[attr-defined]
    if verbosity == "verbose":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_ShortFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity == "verbose" else logging.INFO)
    logging.getLogger("raycross").setLevel(
        {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}[verbosity])
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.INFO if verbosity == "verbose" else logging.WARNING)
    _configure_libraries(verbosity)


class _ShortFormatter(logging.Formatter):
    """``message`` for INFO, ``LEVEL: message`` for warnings and errors (no timestamps, no logger names)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return message if record.levelno <= logging.INFO else f"{record.levelname}: {message}"


def _configure_libraries(verbosity: str) -> None:
    quiet_libraries = verbosity != "verbose"
    try:
        import transformers

        if quiet_libraries:
            transformers.utils.logging.set_verbosity_error()  # the weight-load report, deprecation chatter
            transformers.utils.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
        else:
            transformers.utils.logging.set_verbosity_info()
            transformers.utils.logging.enable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    if quiet_libraries:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_MININTERVAL", "0.5")
    if verbosity == "quiet":
        os.environ["TQDM_DISABLE"] = "1"  # tqdm >= 4.66 reads it for every bar
    elif os.environ.get("TQDM_DISABLE") == "1" and logging.getLogger("raycross").manager is not None:
        os.environ.pop("TQDM_DISABLE", None)  # set by an earlier quiet configuration of this process


def summary_table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table (floats with 4 decimals), for the end of a command.

    Example:
        >>> print(summary_table("Run", [("steps", 84)], ["item", "value"]))
        Run
        item   value
        -----  -----
        steps  84
    """
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
    lines = [title, "  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def result_table(command: str, result: dict[str, Any]) -> str:
    """The summary table of a command's result dict: nested metric dicts become columns, the rest rows.

    Example:
        >>> print(result_table("evaluate", {"model_path": "m", "metrics": {"ndcg@10": 0.5}}))
        raycross evaluate: summary
        item     value
        -------  ------
        model    m
        ndcg@10  0.5000
    """
    nested = {k: v for k, v in result.items() if isinstance(v, dict) and v and
              all(isinstance(x, (int, float)) for x in v.values())}
    if len(nested) >= 2:  # e.g. base / untrained / trained metrics: one column each
        keys = list(dict.fromkeys(k for v in nested.values() for k in v))
        rows = [[k, *(v.get(k, "") for v in nested.values())] for k in keys]
        table = summary_table(f"raycross {command}: summary", rows, ["metric", *nested])
        rest = {k: v for k, v in result.items() if k not in nested}
        extra = [[k.removesuffix("_path"), v] for k, v in rest.items() if not isinstance(v, (dict, list))]
        return table + ("\n" + "\n".join(f"{k}: {_fmt(v)}" for k, v in extra) if extra else "")
    rows: list[list[Any]] = []
    for key, value in result.items():
        if isinstance(value, dict):
            rows += [[k, v] for k, v in value.items() if not isinstance(v, (dict, list))]
        elif not isinstance(value, list):
            rows.append([key.removesuffix("_path"), value])
    return summary_table(f"raycross {command}: summary", rows, ["item", "value"])


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
