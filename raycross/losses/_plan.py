"""What a loss scores for one batch: its (text_a, text_b) pairs, in forward-pass chunks, and their features.

A loss turns a batch's input columns into a :class:`ScorePlan` (``loss.plan(inputs)``); whoever runs the
step tokenizes the plan with the model's ``preprocess`` (the training pipeline does it ahead of the step, in
its background thread) and passes the plan back to the loss (``loss(plan, labels)``), which scores exactly
the tokenized chunks. A loss called with raw texts (``loss(inputs, labels)``) plans and tokenizes on the spot.

Example:
    >>> plan = ScorePlan.from_pairs([("q", "d1"), ("q", "d2"), ("q", "d3")], mini_batch_size=2, batch_size=1)
    >>> [len(chunk) for chunk in plan.chunks], plan.info
    ([2, 1], {'batch_size': 1})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

Pair = tuple[str, str]
Features = Mapping[str, Tensor]


def chunk_ranges(n: int, mini_batch_size: int | None) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive (begin, end) chunks; ``None`` or <= 0 means one chunk.

    Example:
        >>> chunk_ranges(5, 2)
        [(0, 2), (2, 4), (4, 5)]
    """
    if not mini_batch_size or mini_batch_size <= 0 or mini_batch_size >= n:
        return [(0, n)]
    return [(b, min(b + mini_batch_size, n)) for b in range(0, n, mini_batch_size)]


def count_tokens(features: Any) -> int:
    """Non-padding tokens of one tokenized chunk (all input ids when there is no attention mask)."""
    mask = features.get("attention_mask") if hasattr(features, "get") else None
    if mask is not None:
        return int(mask.sum())
    ids = features.get("input_ids") if hasattr(features, "get") else None
    return int(ids.numel()) if ids is not None else 0


@dataclass
class ScorePlan:
    """The pairs a loss scores for one batch, one list per forward pass, and (once tokenized) their features.

    Attributes:
        chunks: the (text_a, text_b) pairs of each forward pass, in scoring order.
        info: what the loss needs besides the logits (batch size, documents per query, ...).
        features: one tokenized mapping per chunk, set by :meth:`tokenize`.
        num_tokens: non-padding tokens of all chunks, set by :meth:`tokenize`.
        prompt: the prompt ``preprocess`` puts before every pair (the training argument ``prompts``), or None.

    Example:
        >>> plan = ScorePlan.from_pairs([("a", "b")]).tokenize(model.preprocess)  # doctest: +SKIP
        >>> loss(plan, labels)  # doctest: +SKIP
    """

    chunks: list[list[Pair]]
    info: dict[str, Any] = field(default_factory=dict)
    features: list[Features] | None = None
    num_tokens: int = 0
    prompt: str | None = None

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair], mini_batch_size: int | None = None, **info: Any) -> ScorePlan:
        """A plan scoring `pairs` in chunks of `mini_batch_size` (one chunk when None)."""
        pairs = list(pairs)
        return cls([pairs[b:e] for b, e in chunk_ranges(len(pairs), mini_batch_size)], dict(info))

    @property
    def pairs(self) -> list[Pair]:
        """Every pair of the plan, in scoring order."""
        return [pair for chunk in self.chunks for pair in chunk]

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """(begin, end) of each chunk in :attr:`pairs`."""
        out, begin = [], 0
        for chunk in self.chunks:
            out.append((begin, begin + len(chunk)))
            begin += len(chunk)
        return out

    def tokenize(self, preprocess: Callable[[list[Pair]], Features]) -> ScorePlan:
        """Tokenize every chunk with `preprocess` (the model's, or a thread's copy of it); no-op when done."""
        if self.features is None:
            extra = {} if self.prompt is None else {"prompt": self.prompt}
            self.features = [preprocess(chunk, **extra) for chunk in self.chunks]
            self.num_tokens = sum(count_tokens(f) for f in self.features)
        return self


def call_loss(loss: Any, inputs: Any, labels: Any, prompt: str | None = None) -> Any:
    """``loss(inputs, labels)`` with the dataset's `prompt`: carried by a plan, else passed as ``prompt=``
    (sentence-transformers' convention) to a loss whose ``forward`` takes it.

    Example:
        >>> call_loss(loss, [["q"], ["d"]], [1.0], prompt="Judge: ")  # doctest: +SKIP
    """
    if prompt is None:
        return loss(inputs, labels)
    if isinstance(inputs, ScorePlan):
        inputs.prompt = prompt
        return loss(inputs, labels)
    check_takes_prompt(loss, prompt)
    return loss(inputs, labels, prompt=prompt)


def check_takes_prompt(loss: Any, prompt: str) -> None:
    """Raise a TypeError when `loss` can receive neither a plan nor a ``prompt=`` argument."""
    import inspect

    if is_planned(loss):
        return
    parameters = inspect.signature(loss.forward).parameters
    if "prompt" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    raise TypeError(
        f"prompts: {type(loss).__name__}.forward(inputs, labels) takes no `prompt`, so the training prompt "
        f"{prompt!r} cannot reach its tokenization; accept `prompt=None` in forward and pass it to "
        "model.preprocess, or drop the prompt for this dataset"
    )


def is_planned(loss: Any) -> bool:
    """True when `loss` plans its batches (``loss.plan(inputs)``) and accepts the plan back in ``forward``.

    That is a :class:`~raycross.losses.CrossEncoderLoss` implementing ``plan`` and keeping the base
    ``forward``. Losses written as a plain ``forward(inputs, labels)`` (custom ones, wrappers, subclasses
    overriding ``forward``) get the raw texts instead, and tokenize inside the step.
    """
    from raycross.losses._base import CrossEncoderLoss

    cls = type(loss)
    return (isinstance(loss, CrossEncoderLoss) and cls.plan is not CrossEncoderLoss.plan
            and cls.forward is CrossEncoderLoss.forward)
