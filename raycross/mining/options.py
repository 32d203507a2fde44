"""Validated mining options: every check that can fail runs here, before any model loads or actor starts."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
SAMPLING_STRATEGIES = ("top", "random")
INDEX_TYPES = ("flat", "ivf")
EXECUTIONS = ("auto", "ray", "local")


def _check_number(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name}: expected a number or None, found {value!r}")


def _check_int(name: str, value: int | None, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, found {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, found {value}")


@dataclass(frozen=True)
class MiningOptions:
    """The filter, sampling and output settings of one mining run (see `mine_hard_negatives`).

    Example:
        >>> opts = MiningOptions.create(num_negatives=5, relative_margin=0.05)
        >>> opts.with_range_max(max_positives=1, rescoring=False).range_max
        51
    """

    range_min: int = 0
    range_max: int | None = None
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    num_negatives: int = 3
    sampling_strategy: str = "top"
    include_positives: bool = False
    output_format: str = "triplet"
    output_scores: bool = False
    seed: int = 0

    @classmethod
    def create(cls, **kwargs) -> MiningOptions:
        """Validate and build options; applies the anchor's `include_positives` rule (forces n-tuple)."""
        opts = cls(**kwargs)
        _check_int("range_min", opts.range_min, 0)
        _check_int("range_max", opts.range_max, 1, allow_none=True)
        _check_int("num_negatives", opts.num_negatives, 1)
        _check_int("seed", opts.seed, 0)
        for name in ("max_score", "min_score", "absolute_margin", "relative_margin"):
            _check_number(name, getattr(opts, name))
        # sentence-transformers 6.2 accepts negative margins (they loosen the filter) and min_score > max_score
        # (nothing passes both bounds); so does raycross, with a warning for the empty window
        if opts.min_score is not None and opts.max_score is not None and opts.min_score > opts.max_score:
            logger.warning("min_score (%s) > max_score (%s): no candidate can pass both bounds, so no negatives "
                           "will be mined", opts.min_score, opts.max_score)
        if opts.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"sampling_strategy: expected one of {SAMPLING_STRATEGIES}, found {opts.sampling_strategy!r}"
            )
        if opts.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format: expected one of {OUTPUT_FORMATS}, found {opts.output_format!r}")
        for name in ("include_positives", "output_scores"):
            if not isinstance(getattr(opts, name), bool):
                raise TypeError(f"{name}: expected a bool, found {getattr(opts, name)!r}")
        if opts.include_positives:
            if opts.has_filters or opts.range_min != 0 or opts.range_max is not None or opts.sampling_strategy != "top":
                logger.warning(
                    "With include_positives=True, changing range_min, range_max, max_score, min_score, absolute_margin, "
                    "relative_margin or sampling_strategy from their defaults may still discard the positives."
                )
            if opts.output_format != "n-tuple":
                logger.warning(
                    'include_positives=True: output_format is set to "n-tuple" so that the ranking order is kept.'
                )
                opts = replace(opts, output_format="n-tuple")
        if opts.range_max is not None:
            opts.check_range()
        return opts

    @property
    def has_margin(self) -> bool:
        return self.absolute_margin is not None or self.relative_margin is not None

    @property
    def has_filters(self) -> bool:
        """True when a margin or a score bound is set (only then does a cross-encoder rescore, as in the anchor)."""
        return self.has_margin or self.max_score is not None or self.min_score is not None

    def check_range(self) -> None:
        """Raise when range_min/range_max leave fewer than num_negatives candidates."""
        if self.range_min >= self.range_max:
            raise ValueError(
                f"range_min must be smaller than range_max, found range_min={self.range_min} and range_max={self.range_max}"
            )
        if self.num_negatives > self.range_max - self.range_min:
            raise ValueError(
                f"num_negatives={self.num_negatives} cannot be mined: only range_max - range_min = "
                f"{self.range_max - self.range_min} candidates remain (range_min={self.range_min}, range_max={self.range_max}). "
                "Decrease num_negatives or range_min, or increase range_max."
            )

    def with_range_max(self, max_positives: int, rescoring: bool) -> MiningOptions:
        """Fill in range_max as the anchor does when it is None.

        range_min + num_negatives + max_positives, or range_min + 10 * num_negatives + max_positives when
        a margin, max_score, or (with a cross-encoder) min_score may discard candidates. `max_positives`
        counts dataset rows per query, duplicates included, like the anchor.
        """
        if self.range_max is not None:
            return self
        discarding = self.has_margin or self.max_score is not None or (rescoring and self.min_score is not None)
        range_max = self.range_min + self.num_negatives * (10 if discarding else 1) + max_positives
        logger.info("Setting range_max to %d based on the provided parameters.", range_max)
        opts = replace(self, range_max=range_max)
        opts.check_range()
        return opts

    def retrieval_depth(self, max_positives: int) -> int:
        """Candidates retrieved per query: range_max plus room for the positives."""
        return int(self.range_max) + max_positives
