"""Hard-negative mining on Ray Data, with the semantics of sentence-transformers' `mine_hard_negatives`.

Example:
    >>> from raycross.mining import mine_hard_negatives
    >>> mined = mine_hard_negatives(pairs, "sentence-transformers/all-MiniLM-L6-v2", num_negatives=3)  # doctest: +SKIP
"""

from raycross.mining.mine import mine_hard_negatives
from raycross.mining.options import MiningOptions
from raycross.mining.stats import MiningStatistics, ScoreSummary

__all__ = ["mine_hard_negatives", "MiningOptions", "MiningStatistics", "ScoreSummary"]
