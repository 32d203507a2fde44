"""The batch pipeline of one worker: gather texts, tokenize ahead in a background thread, hand over.

Losses receive texts and tokenize them through ``model.preprocess``. During training that method is
replaced by a :class:`TokenCache`: a background thread (:class:`BatchStream`) builds the next batches
and tokenizes the pairs the loss will ask for (with its own copy of the tokenizer, dynamic padding to
the longest pair of each batch), so tokenization overlaps the forward/backward of the current step.
A loss that asks for other pairs is simply tokenized on the spot.

Example:
    >>> planned_pairs(None, [["q1", "q2"], ["d1", "d2"]])
    [[('q1', 'd1'), ('q2', 'd2')]]
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def pairs_key(pairs: Sequence[Any]) -> Hashable:
    """A dict key for a list of pairs (or single texts)."""
    return tuple(p if isinstance(p, str) else tuple(p) for p in pairs)


def _chunks(n: int, size: int | None) -> list[tuple[int, int]]:
    if not size or size <= 0 or size >= n:
        return [(0, n)]
    return [(b, min(b + size, n)) for b in range(0, n, size)]


def planned_pairs(loss: Any, inputs: list[list[Any]]) -> list[list[tuple[str, str]]]:
    """The pair lists `loss` will tokenize for a batch, when predictable (else ``[]``).

    A loss may define ``prefetch_pairs(inputs)`` to say it exactly; otherwise pointwise (text, text)
    batches and listwise (query, [docs]) batches chunked by ``loss.mini_batch_size`` are recognised.
    """
    custom = getattr(loss, "prefetch_pairs", None)
    if callable(custom):
        return [list(p) for p in custom(inputs)]
    if len(inputs) != 2 or not inputs[0]:
        return []
    first, second = inputs
    if not all(isinstance(q, str) for q in first):
        return []
    if all(isinstance(d, str) for d in second):
        return [list(zip(first, second))]
    if all(isinstance(d, (list, tuple)) for d in second):
        flat = [(q, d) for q, docs in zip(first, second) for d in docs]
        return [flat[b:e] for b, e in _chunks(len(flat), getattr(loss, "mini_batch_size", None))]
    return []


class _TokenizerProxy:
    """The model seen through another tokenizer: lets a thread call the model's own ``preprocess``."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self._model = model
        self.tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class TokenCache:
    """Replaces ``model.preprocess`` while training: serves the features tokenized ahead for this step.

    Also counts the (non-padding) tokens of the training forward passes, for tokens/s.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.preprocess = type(model).preprocess
        self.current: dict[Hashable, Any] = {}
        self.counting = False
        self.tokens = 0
        self.hits = 0
        self.misses = 0
        self._counted: set[Hashable] = set()

    def __call__(self, pairs: Sequence[Any]) -> Any:
        key = pairs_key(pairs)
        features = self.current.get(key)
        if features is None:
            features = self.preprocess(self.model, pairs)
            if self.counting:
                self.misses += 1
        elif self.counting:
            self.hits += 1
        if self.counting and key not in self._counted:
            self._counted.add(key)
            mask = features.get("attention_mask") if hasattr(features, "get") else None
            self.tokens += int(mask.sum()) if mask is not None else int(features["input_ids"].numel())
        return features

    def start_step(self, features: dict[Hashable, Any]) -> None:
        self.current = features
        self._counted = set()
        self.counting = True

    def end_step(self) -> None:
        self.current = {}
        self.counting = False

    def install(self) -> None:
        self.model.__dict__["preprocess"] = self
        self.model.__dict__["tokenize"] = self

    def uninstall(self) -> None:
        self.model.__dict__.pop("preprocess", None)
        self.model.__dict__.pop("tokenize", None)


@dataclass
class Batch:
    """One micro-batch: the dataset it comes from, its texts and labels, features tokenized ahead."""

    dataset: str
    inputs: list[list[Any]]
    labels: Any
    num_rows: int
    features: dict[Hashable, Any] = field(default_factory=dict)


class BatchStream:
    """Iterates micro-batches built by `make_batch(step)` for `steps`, prepared `prefetch` steps ahead.

    `make_batch` runs in a daemon thread; with ``tokenize=True`` the thread also tokenizes the pairs
    the loss of the batch's dataset will request (:func:`planned_pairs`), with its own tokenizer copy
    (a fast tokenizer must not be shared between threads). ``prefetch=0`` builds batches inline.
    """

    def __init__(
        self,
        steps: Sequence[int],
        make_batch: Callable[[int], Batch],
        model: Any,
        losses: dict[str, Any],
        prefetch: int = 2,
        tokenize: bool = True,
    ) -> None:
        self.steps = list(steps)
        self.make_batch = make_batch
        self.losses = losses
        self.prefetch = prefetch
        self.tokenize = tokenize
        self._proxy = _TokenizerProxy(model, copy.deepcopy(model.tokenizer)) if tokenize else None
        self._preprocess = type(model).preprocess
        self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _build(self, step: int) -> Batch:
        batch = self.make_batch(step)
        if self.tokenize:
            for pairs in planned_pairs(self.losses.get(batch.dataset), batch.inputs):
                if pairs:
                    batch.features[pairs_key(pairs)] = self._preprocess(self._proxy, pairs)
        return batch

    def _produce(self) -> None:
        try:
            for step in self.steps:
                if self._stop.is_set():
                    return
                item = self._build(step)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # surfaced in the training thread
            self._queue.put(exc)

    def __iter__(self) -> Iterator[Batch]:
        if self.prefetch <= 0:
            for step in self.steps:
                yield self._build(step)
            return
        self._thread = threading.Thread(target=self._produce, name="raycross-batches", daemon=True)
        self._thread.start()
        try:
            for _ in self.steps:
                item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def epoch_step_plan(schedule: np.ndarray, dataset_names: list[str]) -> list[tuple[str, int]]:
    """For each micro step of an epoch: (dataset name, index of that dataset's batch to use).

    Example:
        >>> epoch_step_plan(np.array([0, 1, 0]), ["a", "b"])
        [('a', 0), ('b', 0), ('a', 1)]
    """
    counters = np.zeros(len(dataset_names), dtype=np.int64)
    plan = []
    for d in schedule.tolist():  # one entry per step (not per row)
        plan.append((dataset_names[d], int(counters[d])))
        counters[d] += 1
    return plan
