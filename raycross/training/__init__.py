"""Training cross-encoders: in this process or on Ray Train workers, with one per-worker loop.

Example:
    >>> from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments, BatchSamplers
    >>> args = CrossEncoderTrainingArguments("out", batch_sampler=BatchSamplers.NO_DUPLICATES)
    >>> args.batch_sampler.value
    'no_duplicates'
"""

from raycross.training.arguments import (
    BatchSamplers,
    CrossEncoderTrainingArguments,
    IntervalStrategy,
    MultiDatasetBatchSamplers,
    SchedulerType,
)
from raycross.training.trainer import CrossEncoderTrainer, TrainResult

__all__ = [
    "BatchSamplers",
    "CrossEncoderTrainer",
    "CrossEncoderTrainingArguments",
    "IntervalStrategy",
    "MultiDatasetBatchSamplers",
    "SchedulerType",
    "TrainResult",
]
