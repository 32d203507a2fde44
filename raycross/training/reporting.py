"""``report_to`` integrations: TensorBoard (raycross's writer) and transformers' own ``WandbCallback`` and
``MLflowCallback``, created on the worker that logs (rank 0; they check ``state.is_world_process_zero``).

They see raycross's arguments (``to_dict()``, ``run_name``, ``output_dir``, ...), the TrainerState and the
CrossEncoder (its ``config`` is the transformers config), which is all they read.

Example:
    >>> [type(c).__name__ for c in reporting_callbacks([])]
    []
"""

from __future__ import annotations

import importlib.util
from typing import Any

INTEGRATIONS = ("tensorboard", "wandb", "mlflow")
_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def installed_integrations() -> list[str]:
    """The supported integrations whose package is installed (what ``report_to="all"`` means)."""
    return [name for name in INTEGRATIONS if importlib.util.find_spec(_MODULES[name]) is not None]


def reporting_callbacks(report_to: list[str]) -> list[Any]:
    """One callback per integration in `report_to`."""
    callbacks: list[Any] = []
    for name in report_to:
        if name == "tensorboard":
            from raycross.training.callbacks import TensorBoardCallback

            callbacks.append(TensorBoardCallback())
        elif name == "wandb":
            from transformers.integrations import WandbCallback

            callbacks.append(WandbCallback())
        elif name == "mlflow":
            from transformers.integrations import MLflowCallback

            callbacks.append(MLflowCallback())
        else:
            raise ValueError(f"report_to: unsupported integration {name!r}; supported: {list(INTEGRATIONS)}")
    return callbacks
