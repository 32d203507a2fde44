"""Which global batch every worker trains at every micro-step of an epoch, for any worker count.

An in-memory dataset's batches of an epoch are cut from the *whole* dataset, from the seed and the
per-device batch size only: the same list on every worker and for every worker count. A plan covers the
epoch (or its rest after a resume) on ``W`` workers: the ``j``-th micro-step that draws from dataset ``d``
gives worker ``r`` the global batch ``start[d] + j * W + r``. The position saved with a checkpoint is the
number of global batches trained, so a resume on ``W'`` workers continues at exactly that batch: every
batch of the epoch is trained exactly once, whatever the worker counts before and after.

When fewer than ``W`` batches of a dataset are left at its last step, the workers beyond take a *padding*
batch (weight 0: forward and backward run, so gradients sync, but it adds nothing), so every worker takes
the same number of steps.

A streamed dataset is split by Ray Data into per-worker shards; its unit is one per-worker batch (``W``
global batches per step) and :meth:`EpochPlan.rest` continues it at the same share of the epoch.

Example:
    >>> plan = EpochPlan.first("proportional", [5], world_size=2, seed=0, epoch=0)
    >>> plan.steps, plan.totals
    ([3], [5])
    >>> [plan.global_batch(0, j, rank) for j in range(3) for rank in range(2)]  # 5 is padding
    [0, 1, 2, 3, 4, 5]
    >>> plan.done(2)  # after 2 micro-steps on 2 workers: 4 batches trained
    [4]
    >>> rest = EpochPlan.rest("proportional", plan.totals, plan.done(2), world_size=3, seed=0, epoch=0)
    >>> rest.steps, [rest.global_batch(0, 0, r) for r in range(3)]
    ([1], [4, 5, 6])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from raycross.training.arguments import MultiDatasetBatchSamplers
from raycross.training.samplers import dataset_schedule, epoch_rng


@dataclass
class EpochPlan:
    """The micro-steps of one epoch (or of its rest) on `world_size` workers.

    Attributes:
        world_size: the number of workers the plan is for.
        totals: global batches of each dataset the epoch trains.
        start: global batches of each dataset trained before the plan's first micro-step.
        schedule: the dataset index of each micro-step (the same on every worker).
    """

    world_size: int
    totals: list[int]
    start: list[int]
    schedule: np.ndarray

    @classmethod
    def first(cls, kind: MultiDatasetBatchSamplers | str, full: Sequence[int], world_size: int, seed: int,
              epoch: int) -> EpochPlan:
        """The plan of a whole epoch: `full` global batches of each dataset, ``ceil(full / W)`` micro-steps each
        (``round_robin`` stops when the dataset with the fewest steps runs out, as in sentence-transformers)."""
        steps = [math.ceil(n / world_size) for n in full]
        schedule = dataset_schedule(kind, steps, seed, epoch)
        counts = np.bincount(schedule, minlength=len(full))
        totals = [min(int(n), int(c) * world_size) for n, c in zip(full, counts)]
        return cls(world_size, totals, [0] * len(full), schedule)

    @classmethod
    def rest(cls, kind: MultiDatasetBatchSamplers | str, totals: Sequence[int], start: Sequence[int],
             world_size: int, seed: int, epoch: int) -> EpochPlan:
        """The rest of an epoch from `start` global batches done, on `world_size` workers."""
        steps = [math.ceil(max(0, t - s) / world_size) for t, s in zip(totals, start)]
        kind = MultiDatasetBatchSamplers.parse(kind, "multi_dataset_batch_sampler")
        if kind is MultiDatasetBatchSamplers.ROUND_ROBIN or len(steps) == 1:
            # turns over the datasets that have steps left (a plain tile when all have as many)
            turns = np.arange(max(steps, default=0))[:, None] < np.asarray(steps)[None, :]
            schedule = np.nonzero(turns)[1]
        else:
            schedule = epoch_rng(seed, epoch, 7919, *start).permutation(np.repeat(np.arange(len(steps)), steps))
        return cls(world_size, [int(t) for t in totals], [int(s) for s in start], schedule.astype(np.int64))

    @property
    def steps(self) -> list[int]:
        """Micro-steps of each dataset in the plan."""
        return np.bincount(self.schedule, minlength=len(self.totals)).tolist()

    def global_batch(self, dataset: int, occurrence: int, rank: int) -> int:
        """The global batch worker `rank` trains at the `occurrence`-th micro-step of `dataset` (padding when
        it is ``>= totals[dataset]``)."""
        return self.start[dataset] + occurrence * self.world_size + rank

    def done(self, micro_steps: int) -> list[int]:
        """Global batches of each dataset trained after the plan's first `micro_steps` micro-steps."""
        counts = np.bincount(self.schedule[:micro_steps], minlength=len(self.totals))
        return [min(t, s + int(c) * self.world_size) for t, s, c in zip(self.totals, self.start, counts)]
