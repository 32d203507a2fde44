"""The mining statistics table: positive/negative/difference score summaries, filter skip counts and the
number of samples short of negatives, computed from the compact per-query results."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from raycross.mining.options import MiningOptions
from raycross.mining.select import FILTERS

logger = logging.getLogger(__name__)

_METRICS = ("mean", "median", "std", "min", "25%", "50%", "75%", "max")


@dataclass
class ScoreSummary:
    """count/mean/median/std/min/quartiles/max of a set of scores (NaN when empty).

    `median` is the lower middle value (as torch.median in the anchor's table); `q50` interpolates.

    Example:
        >>> ScoreSummary.of(np.array([1.0, 2.0, 3.0, 4.0])).median
        2.0
    """

    count: int
    mean: float
    median: float
    std: float
    min: float
    q25: float
    q50: float
    q75: float
    max: float

    @classmethod
    def of(cls, scores: np.ndarray) -> ScoreSummary:
        s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
        n = len(s)
        if n == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan, nan, nan, nan)
        q25, q50, q75 = np.quantile(s, [0.25, 0.5, 0.75])
        return cls(
            count=n,
            mean=float(s.mean()),
            median=float(s[(n - 1) // 2]),
            std=float(s.std(ddof=1)) if n > 1 else float("nan"),
            min=float(s[0]),
            q25=float(q25),
            q50=float(q50),
            q75=float(q75),
            max=float(s[-1]),
        )

    def row(self, metric: str) -> float:
        return {
            "mean": self.mean,
            "median": self.median,
            "std": self.std,
            "min": self.min,
            "25%": self.q25,
            "50%": self.q50,
            "75%": self.q75,
            "max": self.max,
        }[metric]


@dataclass
class MiningStatistics:
    """What a mining run found: score summaries, candidates skipped by each filter, rows short of negatives.

    `skipped[name]` = {"value": the parameter, "skipped": count, "ratio": count / candidates entering that
    filter}; candidates = queries x (range_max + max_positives), reduced by each earlier filter.
    `missing` = maximum possible output rows - output rows (as the anchor's "Could not find enough negatives").

    Example:
        >>> print(stats.table())  # doctest: +SKIP
        Metric       Positive       Negative     Difference
        Count           1,000          2,900
        ...
    """

    positive: ScoreSummary
    negative: ScoreSummary
    difference: ScoreSummary
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_rows: int = 0
    maximum_rows: int = 0
    missing: int = 0
    num_queries: int = 0
    num_pairs: int = 0
    range_max: int = 0
    solutions: list[str] = field(default_factory=list)

    @property
    def missing_ratio(self) -> float:
        return self.missing / self.maximum_rows if self.maximum_rows else 0.0

    def table(self) -> str:
        """The statistics as text lines, in the layout of the anchor's printout."""
        fmt = "{:<6} {:>14} {:>14} {:>14}"
        lines = [
            fmt.format("Metric", "Positive", "Negative", "Difference"),
            fmt.format("Count", f"{self.positive.count:,}", f"{self.negative.count:,}", ""),
        ]
        for metric in _METRICS:
            values = [f"{s.row(metric):.4f}" for s in (self.positive, self.negative, self.difference)]
            lines.append(fmt.format(metric.capitalize(), *values))
        for name, info in self.skipped.items():
            lines.append(
                f"Skipped {info['skipped']:,} potential negatives ({info['ratio']:.2%}) due to the {name} of {info['value']}."
            )
        if self.missing > 0:
            sol = self.solutions
            considerations = ", ".join(sol[:-1]) + " and " + sol[-1] if len(sol) > 1 else sol[0]
            lines.append(
                f"Could not find enough negatives for {self.missing} samples ({self.missing_ratio:.2%}). Consider adjusting "
                f"the {considerations} parameter{'s' if len(sol) > 1 else ''} if you'd like to find more valid negatives."
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["missing_ratio"] = self.missing_ratio
        return out

    def log(self, level: int = logging.INFO) -> None:
        for line in self.table().splitlines():
            logger.log(level, line)


def compute_statistics(
    opts: MiningOptions,
    pos_indptr: np.ndarray,
    pos_scores: np.ndarray,
    neg_scores: np.ndarray,
    skipped: np.ndarray,
    num_dataset_rows: int,
    depth: int,
) -> MiningStatistics:
    """Statistics of a run from per-query arrays.

    Args:
        pos_indptr: (Q + 1,) CSR offsets of each query's unique positives.
        pos_scores: (n_pairs,) score of each (query, positive) pair, in CSR order.
        neg_scores: (Q, num_negatives) chosen negatives' scores, -inf where missing.
        skipped: (4,) totals dropped by absolute_margin, relative_margin, max_score, min_score.
        num_dataset_rows: rows of the input dataset (labeled-pair's maximum counts them).
        depth: candidates retrieved per query (range_max + max_positives).
    """
    n_queries, m = neg_scores.shape
    counts = np.diff(pos_indptr)
    pair_q = np.repeat(np.arange(n_queries), counts)
    pair_neg = neg_scores[pair_q]  # (n_pairs, m): each query's negatives repeated per positive
    finite = np.isfinite(pair_neg)
    fmt = opts.output_format
    if fmt == "n-tuple":
        keep = finite.all(axis=1)
        negs = pair_neg[keep].ravel()
        diffs = (pos_scores[keep][:, None] - pair_neg[keep]).ravel()
        num_rows, maximum = int(keep.sum()), len(pair_q)
    else:
        # triplet, labeled-pair and labeled-list all report each negative once per positive of its query.
        negs = pair_neg[finite]
        diffs = (pos_scores[:, None] - pair_neg)[finite]
        per_query_negs = np.isfinite(neg_scores).sum(axis=1)
        if fmt == "triplet":
            num_rows, maximum = int(finite.sum()), len(pair_q) * m
        elif fmt == "labeled-pair":
            num_rows, maximum = int(len(pair_q) + per_query_negs.sum()), n_queries * m + num_dataset_rows
        else:  # labeled-list
            num_rows, maximum = int(finite.any(axis=1).sum()), len(pair_q)

    total = n_queries * depth
    skipped_info: dict[str, dict[str, Any]] = {}
    for name, count in zip(FILTERS, skipped):
        value = getattr(opts, name)
        if value is None:
            continue
        count = int(count)
        if count:
            skipped_info[name] = {"value": value, "skipped": count, "ratio": count / total if total else 0.0}
        total -= count

    solutions = ["range_max"] + [
        name
        for name, on in (
            ("range_min", opts.range_min > 0),
            ("absolute_margin", opts.absolute_margin is not None),
            ("relative_margin", opts.relative_margin is not None),
            ("max_score", opts.max_score is not None),
        )
        if on
    ]
    return MiningStatistics(
        positive=ScoreSummary.of(pos_scores),
        negative=ScoreSummary.of(negs),
        difference=ScoreSummary.of(diffs),
        skipped=skipped_info,
        num_rows=num_rows,
        maximum_rows=maximum,
        missing=max(0, maximum - num_rows),
        num_queries=n_queries,
        num_pairs=len(pair_q),
        range_max=int(opts.range_max),
        solutions=solutions,
    )
