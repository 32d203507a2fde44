"""Legacy ``CrossEncoder.fit``: the pre-v4 sentence-transformers training API (``InputExample`` +
``DataLoader``) on top of :class:`~raycross.training.CrossEncoderTrainer`, in this process.

Example:
    >>> from torch.utils.data import DataLoader
    >>> from raycross import CrossEncoder, InputExample
    >>> model = CrossEncoder("microsoft/MiniLM-L12-H384-uncased", num_labels=1)  # doctest: +SKIP
    >>> examples = [InputExample(texts=["q", "relevant"], label=1), InputExample(texts=["q", "other"], label=0)]
    >>> model.fit(DataLoader(examples, batch_size=16, shuffle=True), epochs=1, warmup_steps=100)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._base import CrossEncoderLoss
from raycross.losses._plan import ScorePlan

logger = logging.getLogger(__name__)

_SCHEDULERS = {
    "constantlr": "constant",
    "warmupconstant": "constant_with_warmup",
    "warmuplinear": "linear",
    "warmupcosine": "cosine",
}


class LegacyLoss(CrossEncoderLoss):
    """A plain torch loss on ``(logits, labels)``, as ``fit(loss_fct=...)`` took it (e.g. ``nn.MSELoss()``).

    Example:
        >>> loss = LegacyLoss(model, nn.MSELoss())  # doctest: +SKIP
    """

    inputs_description = "(text_a, text_b) pairs: fit(loss_fct=...) needs examples with 2 texts"
    label_description = "one label per pair"

    def __init__(self, model: Any, loss_fct: nn.Module, activation_fn: nn.Module | None = None) -> None:
        super().__init__(model)
        self.loss_fct = loss_fct
        self.activation_fn = activation_fn if activation_fn is not None else nn.Identity()

    def _accepts_num_labels(self, num_labels: int) -> bool:
        return True

    def plan(self, inputs: list[list[str]], generator: torch.Generator | None = None) -> ScorePlan:
        return self.pairwise_plan(inputs)

    def loss_from_plan(self, plan: ScorePlan, labels: Tensor) -> Tensor:
        logits = self.score(plan)
        labels = torch.as_tensor(labels, device=logits.device)
        if self.model.num_labels == 1:
            logits, labels = logits.view(-1), labels.float()
        else:
            labels = labels.long()
        return self.loss_fct(self.activation_fn(logits), labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss_fct": type(self.loss_fct).__name__}


class _SaveBest:
    """Saves the model to `output_path` whenever the evaluator's primary metric improves."""

    def __init__(self, output_path: str, evaluator: Any) -> None:
        self.output_path = output_path
        self.evaluator = evaluator
        self.best: float | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, model: Any = None, **kw: Any) -> None:
        value = _primary_value(self.evaluator, metrics or {})
        if value is None:
            return
        greater = getattr(self.evaluator, "greater_is_better", True)
        if self.best is None or (value > self.best if greater else value < self.best):
            self.best = value
            model.save_pretrained(self.output_path)


class _EvaluateEachEpoch:
    """The old fit evaluated at the end of every epoch, besides every ``evaluation_steps``."""

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        control.should_evaluate = True


class _ScoreCallback:
    """Calls the old ``callback(score, epoch, steps)`` after each evaluation."""

    def __init__(self, callback: Callable[[float, int, int], None], evaluator: Any) -> None:
        self.callback = callback
        self.evaluator = evaluator

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kw: Any) -> None:
        value = _primary_value(self.evaluator, metrics or {})
        if value is not None:
            self.callback(value, state.epoch, state.global_step)


def _primary_value(evaluator: Any, metrics: dict[str, float]) -> float | None:
    primary = getattr(evaluator, "primary_metric", None)
    if primary and f"eval_{primary}" in metrics:
        return float(metrics[f"eval_{primary}"])
    return None


def _examples(train_dataloader: Any) -> list[Any]:
    dataset = getattr(train_dataloader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        return [dataset[i] for i in range(len(dataset))]
    return [example for example in train_dataloader]


def _columns(examples: list[Any]) -> dict[str, list[Any]]:
    """InputExamples as columns ``sentence_0, sentence_1, ... [, label]`` (no label column if all are 0)."""
    if not examples:
        raise ValueError("train_dataloader: no training examples")
    widths = {len(getattr(e, "texts", ())) for e in examples}
    if any(not hasattr(e, "texts") for e in examples) or len(widths) != 1:
        raise ValueError(
            f"train_dataloader: expected InputExample objects with the same number of texts, found text counts {sorted(widths)}"
        )
    columns = {f"sentence_{i}": [e.texts[i] for e in examples] for i in range(widths.pop())}
    labels = [e.label for e in examples]
    if any(label != 0 for label in labels):
        columns["label"] = labels
    return columns


def fit(
    model: Any,
    train_dataloader: Any,
    evaluator: Any = None,
    epochs: int = 1,
    loss_fct: nn.Module | None = None,
    activation_fct: nn.Module = nn.Identity(),
    scheduler: str = "WarmupLinear",
    warmup_steps: int = 10000,
    optimizer_class: type[torch.optim.Optimizer] = torch.optim.AdamW,
    optimizer_params: dict[str, Any] | None = None,
    weight_decay: float = 0.01,
    evaluation_steps: int = 0,
    output_path: str | None = None,
    save_best_model: bool = True,
    max_grad_norm: float = 1,
    use_amp: bool = False,
    callback: Callable[[float, int, int], None] | None = None,
    show_progress_bar: bool = True,
) -> None:
    """Train `model` with the pre-v4 sentence-transformers arguments (see the module docstring).

    The examples are turned into a dataset (``sentence_0``, ``sentence_1``, ``label``) and trained with
    :class:`~raycross.training.CrossEncoderTrainer` in this process. With an evaluator, it runs every
    ``evaluation_steps`` and at each epoch end; with ``output_path`` the best model (by the evaluator's
    primary metric; the final one without evaluator or with ``save_best_model=False``) is saved there.
    """
    from raycross.losses import BinaryCrossEntropyLoss, CrossEntropyLoss
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    if optimizer_class is not torch.optim.AdamW:
        raise ValueError(f"optimizer_class: only torch.optim.AdamW is supported, found {optimizer_class.__name__}")
    optimizer_params = dict(optimizer_params or {"lr": 2e-5})
    unknown = sorted(set(optimizer_params) - {"lr", "betas", "eps"})
    if unknown:
        raise ValueError(f"optimizer_params: supported keys are lr, betas, eps; found {unknown}")
    schedule = _SCHEDULERS.get(str(scheduler).lower())
    if schedule is None:
        raise ValueError(f"scheduler: expected one of {sorted(_SCHEDULERS)} (case-insensitive), found {scheduler!r}")

    columns = _columns(_examples(train_dataloader))
    batch_size = getattr(train_dataloader, "batch_size", None) or 8
    if loss_fct is None:
        loss = (BinaryCrossEntropyLoss(model, activation_fn=activation_fct) if model.num_labels == 1
                else CrossEntropyLoss(model, activation_fn=activation_fct))
    else:
        loss = LegacyLoss(model, loss_fct, activation_fct)

    callbacks: list[Any] = []
    if evaluator is not None:
        callbacks.append(_EvaluateEachEpoch())
        if output_path is not None and save_best_model:
            callbacks.append(_SaveBest(output_path, evaluator))
        if callback is not None:
            callbacks.append(_ScoreCallback(callback, evaluator))
    work_dir = tempfile.mkdtemp(prefix="raycross-fit-")
    betas = optimizer_params.get("betas", (0.9, 0.999))
    try:
        args = CrossEncoderTrainingArguments(
            output_dir=work_dir, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size, learning_rate=optimizer_params.get("lr", 2e-5),
            adam_beta1=betas[0], adam_beta2=betas[1], adam_epsilon=optimizer_params.get("eps", 1e-8),
            weight_decay=weight_decay, lr_scheduler_type=schedule,
            warmup_steps=0 if schedule == "constant" else int(warmup_steps),
            max_grad_norm=max_grad_norm, fp16=use_amp and torch.cuda.is_available(),
            eval_strategy="steps" if evaluator is not None and evaluation_steps > 0 else "no",
            eval_steps=evaluation_steps or None, save_strategy="no", logging_steps=max(1, evaluation_steps or 500),
            disable_tqdm=not show_progress_bar, num_workers=0,
        )
        trainer = CrossEncoderTrainer(model, args, train_dataset=columns, loss=loss, evaluator=evaluator,
                                      callbacks=callbacks)
        trainer.train(resume_from_checkpoint=False)
        if output_path is not None and (evaluator is None or not save_best_model):
            model.save_pretrained(output_path)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
