"""Callbacks: the transformers ``TrainerCallback`` protocol, plus raycross's progress bar, log lines and
TensorBoard writer.

User callbacks are transformers ``TrainerCallback`` objects (or anything with the same ``on_*`` methods);
they run in every worker, with ``state.is_world_process_zero`` telling rank 0 apart, and a stop request
from any worker (``control.should_training_stop``) stops all of them.

Example:
    >>> from transformers import TrainerCallback
    >>> class StopAt(TrainerCallback):
    ...     def on_step_end(self, args, state, control, **kwargs):
    ...         control.should_training_stop = state.global_step >= 10
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any

from transformers import TrainerControl, TrainerState

logger = logging.getLogger(__name__)

EVENTS = (
    "on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin", "on_substep_end", "on_pre_optimizer_step",
    "on_optimizer_step", "on_step_end", "on_log", "on_evaluate", "on_save", "on_epoch_end", "on_train_end",
)


class CallbackHandler:
    """Calls an event on every callback in order; a callback may return a new ``TrainerControl``.

    Example:
        >>> handler = CallbackHandler([LogCallback()])
        >>> control = handler.call("on_log", None, TrainerState(), TrainerControl(), logs={"loss": 0.5})
    """

    def __init__(self, callbacks: list[Any], **defaults: Any) -> None:
        self.callbacks = list(callbacks)
        # passed to every event, as transformers does: model, optimizer, lr_scheduler, processing_class, ...
        self.defaults = defaults

    def call(self, event: str, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        kwargs = {**self.defaults, **kwargs}
        for callback in self.callbacks:
            method = getattr(callback, event, None)
            if method is None:
                continue
            result = method(args, state, control, **kwargs)
            if isinstance(result, TrainerControl):
                control = result
        return control


class ProgressCallback:
    """A tqdm progress bar over optimizer steps (in-process training only)."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="Training", dynamic_ncols=True)

    def on_step_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}", refresh=False)

    def on_train_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogCallback:
    """Writes every log dict (loss, learning rate, grad norm, throughput, eval metrics) as a log line."""

    def on_log(self, args: Any, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in logs.items()}
            logger.info("step %d: %s", state.global_step, shown)


class TensorBoardCallback:
    """TensorBoard event files in ``args.logging_dir`` (default ``output_dir/runs/<run_name>``), rank 0 only.

    Keys ``eval_*`` go to ``eval/*``, the others to ``train/*`` (as the transformers callback does).
    """

    def __init__(self) -> None:
        self.writer = None

    def _log_dir(self, args: Any) -> str:
        return args.logging_dir or str(Path(args.output_dir) / "runs" / str(args.run_name))

    def on_train_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=self._log_dir(args))
        self.writer.add_text("args", "\n".join(f"{k}: {v}" for k, v in sorted(args.to_dict().items())))

    def on_log(self, args: Any, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        if self.writer is None or not logs:
            return
        for key, value in logs.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
                tag = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"
                self.writer.add_scalar(tag, float(value), state.global_step)
        self.writer.flush()

    def on_train_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
