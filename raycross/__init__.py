"""raycross: train cross-encoders (rerankers, pair classifiers) at cluster scale on Ray.

Example:
    >>> from raycross import CrossEncoder
    >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> model.predict([("query", "passage")])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names and the module each lives in; imported lazily so `import raycross` stays light
# (no Ray, no FAISS) for users who only score with a model.
_LAZY = {
    "CrossEncoder": "raycross.model",
    "CrossEncoderModelCardData": "raycross.model_card",
    "InputExample": "raycross.data",
    "Embedder": "raycross.embedder",
    "mine_hard_negatives": "raycross.mining",
    "score_with_teacher": "raycross.scoring",
    "CrossEncoderTrainer": "raycross.training",
    "CrossEncoderTrainingArguments": "raycross.training",
    "BatchSamplers": "raycross.training",
    "MultiDatasetBatchSamplers": "raycross.training",
    "losses": "raycross.losses",
    "evaluation": "raycross.evaluation",
    "tune": "raycross.tune",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'raycross' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"raycross.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
