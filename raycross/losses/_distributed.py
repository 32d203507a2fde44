"""Gather the texts of every training worker (torch.distributed), for losses that use in-batch candidates.

Only texts cross process boundaries: each worker scores its own rows against the gathered candidates in
its own forward pass, so every gradient is local and exact (DDP then averages them as usual).

Example:
    >>> columns, offset = gather_columns([["pos a", "pos b"]])  # doctest: +SKIP
"""

from __future__ import annotations

import torch.distributed as dist


def distributed_world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_columns(columns: list[list[str]], loss_name: str = "loss") -> tuple[list[list[str]], int]:
    """All-gather text columns from every rank, concatenated rank by rank.

    Args:
        columns: this rank's columns, each a list with one text per local row.
        loss_name: for error messages.

    Returns:
        (gathered columns, index of this rank's first row in the gathered rows). Without a process group,
        the local columns and offset 0.

    Example:
        >>> gather_columns([["a", "b"]])
        ([['a', 'b']], 0)
    """
    rank, world = distributed_world()
    if world == 1:
        return columns, 0
    gathered: list[list[list[str]] | None] = [None] * world
    dist.all_gather_object(gathered, [list(c) for c in columns])
    widths = {len(g) for g in gathered}
    if len(widths) != 1:
        raise ValueError(
            f"{loss_name}: workers hold different numbers of candidate columns {[len(g) for g in gathered]}; "
            "every worker must train on the same dataset columns"
        )
    merged = [[text for worker in gathered for text in worker[c]] for c in range(len(columns))]
    offset = sum(len(gathered[r][0]) for r in range(rank)) if columns else 0
    return merged, offset
