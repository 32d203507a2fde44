"""Teacher scoring for distillation: label rows with a teacher's scores, streamed to parquet, resumable.

Example:
    >>> from raycross.scoring import score_with_teacher
    >>> scored = score_with_teacher("mined/", "teacher-dir", "scored/")  # doctest: +SKIP
"""

from raycross.scoring.score import expand_pairs, score_with_teacher
from raycross.scoring.teacher import Teacher

__all__ = ["Teacher", "expand_pairs", "score_with_teacher"]
