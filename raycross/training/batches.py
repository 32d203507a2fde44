"""The batch pipeline of one worker: gather texts, plan and tokenize ahead in a background thread, hand over.

For each micro-batch a background thread (:class:`BatchStream`) gathers the rows' texts and labels, asks the
batch's loss which pairs it will score (``loss.plan(inputs)``, a :class:`~raycross.losses.ScorePlan`:
exactly the pairs and forward-pass chunks the loss uses) and tokenizes them with the model's ``preprocess``
(its own tokenizer copy, dynamic padding per chunk), so tokenization overlaps the forward/backward of the
current step. The loss then receives the tokenized plan (``loss(batch.plan, labels)``).

Two cases are planned in the training thread instead: a loss whose plan is a collective (in-batch negatives
gathered from every worker: collectives must run in the same order on every worker), and none at all for a
loss without ``plan`` (a custom ``forward(inputs, labels)``), which gets the texts and tokenizes in the step.

Example:
    >>> batch = Batch("pairs", [["q1", "q2"], ["d1", "d2"]], [1.0, 0.0], 2)
    >>> batch.loss_inputs
    [['q1', 'q2'], ['d1', 'd2']]
"""

from __future__ import annotations

import copy
import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raycross.losses._plan import ScorePlan, is_planned

logger = logging.getLogger(__name__)


def batch_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of one micro-batch's sampling (in-batch negatives): fixed by run seed, position and worker,
    so a resumed run draws what the uninterrupted one drew, whatever thread plans it.

    Example:
        >>> batch_seed(42, 0, 3, 1) == batch_seed(42, 0, 3, 1) != batch_seed(42, 0, 3, 0)
        True
    """
    return int(np.random.SeedSequence([seed % 2**32, epoch, step, rank]).generate_state(1)[0])


@dataclass
class Batch:
    """One micro-batch: the dataset it comes from, its texts and labels, and its loss's tokenized plan."""

    dataset: str
    inputs: list[list[Any]]
    labels: Any
    num_rows: int
    seed: int = 0
    plan: ScorePlan | None = None
    prompt: str | None = None  # the dataset's training prompt (argument ``prompts``)
    weight: float = 1.0  # 0 for a padding batch (no rows left for this worker at the epoch's end)

    @property
    def loss_inputs(self) -> ScorePlan | list[list[Any]]:
        """What the loss is called with: its tokenized plan, or the texts for a loss that does not plan."""
        return self.plan if self.plan is not None else self.inputs

    @property
    def num_tokens(self) -> int:
        """Non-padding tokens the loss scores (0 when the loss tokenizes by itself)."""
        return self.plan.num_tokens if self.plan is not None else 0


def plan_batch(batch: Batch, loss: Any, preprocess: Callable[[Any], Any]) -> Batch:
    """Set ``batch.plan``: the pairs `loss` scores for the batch, tokenized with `preprocess` (planned losses only).

    Example:
        >>> plan_batch(batch, BinaryCrossEntropyLoss(model), model.preprocess).plan.pairs  # doctest: +SKIP
        [('q1', 'd1'), ('q2', 'd2')]
    """
    if batch.plan is None and is_planned(loss):
        generator = torch.Generator().manual_seed(batch.seed)
        plan = loss.plan(batch.inputs, generator)
        plan.prompt = batch.prompt
        batch.plan = plan.tokenize(preprocess)
    return batch


class BatchStream:
    """Iterates micro-batches built by `make_batch(step)` for `steps`, planned and tokenized `prefetch` steps ahead.

    `make_batch` and the planning run in a daemon thread, which tokenizes with its own copy of the model's
    tokenizer (a fast tokenizer must not be shared between threads). ``prefetch=0`` builds batches inline.
    """

    def __init__(
        self,
        steps: Sequence[int],
        make_batch: Callable[[int], Batch],
        model: Any,
        losses: dict[str, Any],
        prefetch: int = 2,
    ) -> None:
        self.steps = list(steps)
        self.make_batch = make_batch
        self.model = model
        self.losses = losses
        self.prefetch = prefetch
        tokenizer = copy.deepcopy(model.tokenizer) if prefetch > 0 else model.tokenizer
        self._preprocess = functools.partial(model.preprocess, tokenizer=tokenizer)
        self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _collective(self, batch: Batch) -> bool:
        return bool(getattr(self.losses.get(batch.dataset), "plans_collectively", False))

    def _build(self, step: int) -> Batch:
        batch = self.make_batch(step)
        if not self._collective(batch):
            plan_batch(batch, self.losses.get(batch.dataset), self._preprocess)
        return batch

    def _hand_over(self, batch: Batch) -> Batch:
        """In the training thread: plan what needs collectives (in step order on every worker)."""
        if batch.plan is None and self._collective(batch):
            plan_batch(batch, self.losses.get(batch.dataset), self.model.preprocess)
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
                yield self._hand_over(self._build(step))
            return
        self._thread = threading.Thread(target=self._produce, name="raycross-batches", daemon=True)
        self._thread.start()
        try:
            for _ in self.steps:
                item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield self._hand_over(item)
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
