"""The teacher of a distillation run, whatever the user passes: a raycross CrossEncoder (any kind, the
causal LLM rerankers included), a model directory / hub id, or a plain callable ``pairs -> scores``.

Example:
    >>> teacher = Teacher.create(lambda pairs: [len(q) - len(d) for q, d in pairs])
    >>> teacher.score([("abc", "a"), ("a", "abc")]).tolist()
    [2.0, -2.0]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Teacher:
    """Scores (query, document) pairs with one number each.

    Attributes:
        source: the CrossEncoder, the path/hub id to load one from, or a callable.
        batch_size: pairs per forward pass of a CrossEncoder teacher.
        apply_activation: keep the model's activation (e.g. Sigmoid); default False: raw logits, the usual
            target of MarginMSE / MSE distillation.
        device: where a CrossEncoder teacher runs (None: its own device, or the default one when loaded).
    """

    source: Any
    batch_size: int = 64
    apply_activation: bool = False
    device: str | None = None

    @classmethod
    def create(cls, teacher: Any, batch_size: int = 64, apply_activation: bool = False) -> Teacher:
        """Check what the user passed (on the driver, before any worker starts)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
        if isinstance(teacher, Teacher):
            return teacher
        if isinstance(teacher, os.PathLike):
            teacher = os.fspath(teacher)
        if not (isinstance(teacher, str) or _is_cross_encoder(teacher) or callable(teacher)):
            raise TypeError(
                "teacher: expected a raycross CrossEncoder, a model directory or hub id, or a callable "
                f"taking a list of (query, document) pairs and returning one score each; found {type(teacher).__name__}"
            )
        return cls(teacher, batch_size, bool(apply_activation))

    def describe(self) -> str:
        """A name for the manifest of a scoring run: reruns must use the same teacher."""
        if isinstance(self.source, str):
            return self.source
        if _is_cross_encoder(self.source):
            return f"CrossEncoder({getattr(self.source, 'model_name_or_path', '?')})"
        fn = self.source
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"

    def load(self, device: str | None = None) -> Teacher:
        """A ready teacher (a path is loaded as a CrossEncoder, on `device` when given)."""
        source = self.source
        if isinstance(source, str):
            from raycross import CrossEncoder

            source = CrossEncoder(source, device=device)
        elif device is not None and _is_cross_encoder(source):
            source.to(device)
        return Teacher(source, self.batch_size, self.apply_activation, device)

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One float per pair (float32)."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        source = self.source
        if isinstance(source, str):
            raise RuntimeError("Teacher.score: call load() first (the teacher is still a path)")
        if _is_cross_encoder(source):
            import torch

            activation = None if self.apply_activation else torch.nn.Identity()
            scores = source.predict(list(pairs), batch_size=self.batch_size, activation_fn=activation,
                                    show_progress_bar=False)
        else:
            scores = source(list(pairs))
        scores = np.asarray(_to_numpy(scores), dtype=np.float32)
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if scores.shape != (len(pairs),):
            raise ValueError(
                f"teacher {self.describe()}: expected one score per pair ({len(pairs)} scores), found an array "
                f"of shape {tuple(scores.shape)} (a teacher must have a single output label)"
            )
        return scores


def _is_cross_encoder(obj: Any) -> bool:
    return hasattr(obj, "predict") and hasattr(obj, "tokenizer") and hasattr(obj, "hf_model")


def _to_numpy(scores: Any) -> Any:
    if hasattr(scores, "detach"):
        return scores.detach().float().cpu().numpy()
    return scores


Scorer = Callable[[Sequence[tuple[str, str]]], Any]
