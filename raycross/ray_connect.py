"""Connect to Ray, failing fast with a clear error when ``RAY_ADDRESS`` (or ``address=``) points at nothing.

``ray.init`` keeps retrying an address where no cluster answers for minutes; this checks first that the
address takes TCP connections (a few seconds), then calls ``ray.init``.

Example:
    >>> init_ray(num_cpus=2)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


def cluster_address(address: str | None = None) -> str | None:
    """The ``host:port`` raycross would connect to (``address``, else ``RAY_ADDRESS``), None to start a
    local cluster. ``auto`` reads the address of the cluster last started on this machine.

    Example:
        >>> cluster_address("ray://10.0.0.1:10001")
        '10.0.0.1:10001'
    """
    address = address if address is not None else os.environ.get("RAY_ADDRESS")
    if not address or address == "local":
        return None
    if address == "auto":
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        try:
            return current.read_text().strip() or None
        except OSError:
            return None  # ray.init reports that no cluster was found, quickly
    return address.split("://", 1)[-1].rstrip("/")


def check_reachable(address: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ConnectionError when the Ray address in use takes no TCP connection within `timeout_s`.

    Example:
        >>> check_reachable("127.0.0.1:1", timeout_s=1)
        Traceback (most recent call last):
        ...
        ConnectionError: no Ray cluster answers at RAY_ADDRESS / address='127.0.0.1:1' (Connection refused). Start one (ray start --head), fix the address, or unset RAY_ADDRESS to start a local Ray instance
    """
    target = cluster_address(address)
    if target is None:
        return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"RAY_ADDRESS / address={target!r}: expected host:port (or ray://host:port, auto, local)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if isinstance(error, TimeoutError) or isinstance(error, socket.timeout):
            reason = f"no answer within {timeout_s:.0f} s"
        raise ConnectionError(
            f"no Ray cluster answers at RAY_ADDRESS / address={target!r} ({reason}). Start one (ray start --head), "
            "fix the address, or unset RAY_ADDRESS to start a local Ray instance"
        ) from None


def init_ray(address: str | None = None, **kwargs: Any) -> Any:
    """``ray.init`` after :func:`check_reachable` (no-op when Ray is already initialized)."""
    import ray

    if ray.is_initialized():
        return None
    check_reachable(address)
    if address is not None:
        kwargs["address"] = address
    return ray.init(**kwargs)
