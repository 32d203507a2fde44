"""Losses for training cross-encoders; names, arguments and defaults follow sentence-transformers.

Every loss is an ``nn.Module(model, ...)`` with ``forward(inputs, labels)`` returning a scalar
(``inputs``: the batch's columns, or the loss's own :class:`ScorePlan` from ``plan(inputs)``),
``get_config_dict()`` for the model card and ``validate_columns(input_columns, label_column, sample_row)``
to check a dataset before training.

Example:
    >>> from raycross import CrossEncoder
    >>> from raycross.losses import BinaryCrossEntropyLoss
    >>> loss = BinaryCrossEntropyLoss(CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2"))  # doctest: +SKIP
"""

from __future__ import annotations

from raycross.losses._base import CrossEncoderLoss
from raycross.losses._listwise import ListwiseLoss
from raycross.losses._plan import ScorePlan, is_planned
from raycross.losses.adr_mse import ADRMSELoss
from raycross.losses.binary_cross_entropy import BinaryCrossEntropyLoss
from raycross.losses.cached_multiple_negatives_ranking import CachedMultipleNegativesRankingLoss
from raycross.losses.cross_entropy import CrossEntropyLoss
from raycross.losses.lambda_loss import (
    BaseWeightingScheme,
    LambdaLoss,
    LambdaRankScheme,
    NDCGLoss1Scheme,
    NDCGLoss2PPScheme,
    NDCGLoss2Scheme,
    NoWeightingScheme,
)
from raycross.losses.list_mle import ListMLELoss
from raycross.losses.list_net import ListNetLoss
from raycross.losses.margin_mse import MarginMSELoss
from raycross.losses.mse import MSELoss
from raycross.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from raycross.losses.plist_mle import PListMLELambdaWeight, PListMLELoss
from raycross.losses.rank_net import RankNetLoss

__all__ = [
    "ADRMSELoss",
    "BaseWeightingScheme",
    "BinaryCrossEntropyLoss",
    "CachedMultipleNegativesRankingLoss",
    "CrossEncoderLoss",
    "CrossEntropyLoss",
    "LambdaLoss",
    "LambdaRankScheme",
    "ListMLELoss",
    "ListNetLoss",
    "ListwiseLoss",
    "MSELoss",
    "MarginMSELoss",
    "MultipleNegativesRankingLoss",
    "NDCGLoss1Scheme",
    "NDCGLoss2PPScheme",
    "NDCGLoss2Scheme",
    "NoWeightingScheme",
    "PListMLELambdaWeight",
    "PListMLELoss",
    "RankNetLoss",
    "ScorePlan",
    "is_planned",
]
