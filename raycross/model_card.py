"""CrossEncoderModelCardData and the model card (README.md) it renders.

The card data holds what a user says about the model (language, license, name, hub id, datasets, tags)
and what raycross fills in (base model, hyperparameters, losses, training logs, evaluation results,
library versions). ``CrossEncoder.save_pretrained`` writes the card, the trainer refreshes it after
training, ``push_to_hub`` uploads it. The same object is reused across saves, so user fields stay; a
saved card's front matter is read back on load, so they survive a save/load round trip too.

Example:
    >>> card = CrossEncoderModelCardData(language="en", license="apache-2.0", model_id="me/reranker")
    >>> card.add_tags("wordnet")
    >>> "wordnet" in card.tags and card.to_yaml().startswith("language: en")
    True
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

logger = logging.getLogger(__name__)

# front matter keys, in this order (as sentence-transformers' YAML_FIELDS)
YAML_FIELDS = ("language", "license", "library_name", "tags", "datasets", "metrics", "pipeline_tag",
               "model-index", "base_model")
USER_FIELDS = ("language", "license", "model_name", "model_id", "train_datasets", "eval_datasets", "task_name",
               "tags", "local_files_only", "generate_widget_examples")


def get_versions() -> dict[str, str]:
    """Versions of the libraries that made the model (for the card).

    Example:
        >>> sorted(get_versions())[:2]
        ['python', 'raycross']
    """
    import tokenizers
    import torch
    import transformers

    from raycross import __version__

    versions = {"python": platform.python_version(), "raycross": __version__,
                "transformers": transformers.__version__, "torch": torch.__version__,
                "tokenizers": tokenizers.__version__}
    for name in ("sentence_transformers", "datasets", "ray"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return versions


def _default_tags() -> list[str]:
    return ["sentence-transformers", "cross-encoder", "reranker"]


@dataclass
class CrossEncoderModelCardData:
    """Data for a CrossEncoder's model card (sentence-transformers 6.2 names).

    Args:
        language: e.g. "en" or ["en", "de"].
        license: e.g. "apache-2.0".
        model_name: pretty name, e.g. "CrossEncoder based on bert-base-uncased" (default derived).
        model_id: the hub id once pushed, e.g. "me/my-reranker" (used in the usage snippet).
        train_datasets / eval_datasets: ``[{"name": "SNLI", "id": "stanfordnlp/snli"}, ...]``.
        task_name: what the scores are for, e.g. "text reranking and semantic search".
        tags: hub tags (default sentence-transformers, cross-encoder, reranker).
        local_files_only: never look anything up on the hub.
        generate_widget_examples: kept for compatibility (no widget for pair inputs).

    Example:
        >>> from raycross import CrossEncoder
        >>> model = CrossEncoder("my-base", model_card_data=CrossEncoderModelCardData(license="mit"))  # doctest: +SKIP
    """

    language: str | list[str] | None = field(default_factory=list)
    license: str | None = None
    model_name: str | None = None
    model_id: str | None = None
    train_datasets: list[dict[str, str]] = field(default_factory=list)
    eval_datasets: list[dict[str, str]] = field(default_factory=list)
    task_name: str | None = None
    tags: list[str] = field(default_factory=_default_tags)
    local_files_only: bool = False
    generate_widget_examples: bool = True

    # filled in by raycross
    base_model: str | None = field(default=None, init=False)
    base_model_revision: str | None = field(default=None, init=False)
    non_default_hyperparameters: dict[str, Any] = field(default_factory=dict, init=False)
    all_hyperparameters: dict[str, Any] = field(default_factory=dict, init=False)
    eval_results: list[dict[str, Any]] = field(default_factory=list, init=False)
    training_logs: list[dict[str, Any]] = field(default_factory=list, init=False)
    loss_names: list[str] = field(default_factory=list, init=False)
    best_model_step: int | None = field(default=None, init=False)
    training_details: str = field(default="", init=False, repr=False)
    pipeline_tag: str | None = field(default=None, init=False)
    library_name: str = field(default="sentence-transformers", init=False)
    version: dict[str, str] = field(default_factory=get_versions, init=False, repr=False)
    model: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.language, str):
            self.language = [self.language]
        for name in ("train_datasets", "eval_datasets"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(d, Mapping) for d in value):
                raise TypeError(f"{name}: expected a list of dicts like {{'name': ..., 'id': ...}}, found {value!r:.80}")
        if not isinstance(self.tags, list):
            raise TypeError(f"tags: expected a list of strings, found {type(self.tags).__name__}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CrossEncoderModelCardData:
        """Build from the user fields of a dict (e.g. a YAML config); unknown keys are an error.

        Example:
            >>> CrossEncoderModelCardData.from_dict({"license": "mit"}).license
            'mit'
        """
        unknown = sorted(set(data) - set(USER_FIELDS))
        if unknown:
            raise ValueError(f"model_card_data: unknown keys {unknown}; expected some of {list(USER_FIELDS)}")
        return cls(**dict(data))

    # ------------------------------------------------------------------ setters (sentence-transformers names)
    def register_model(self, model: Any) -> None:
        """Attach the model the card describes (base model and pipeline tag come from it)."""
        self.model = model
        self.pipeline_tag = "text-ranking" if getattr(model, "num_labels", 1) == 1 else "text-classification"

    def set_base_model(self, model_id: str, revision: str | None = None) -> bool:
        """Record the base model (a hub id or a local path)."""
        self.base_model, self.base_model_revision = str(model_id), revision
        return True

    def set_model_id(self, model_id: str) -> None:
        self.model_id = model_id

    def set_language(self, language: str | list[str]) -> None:
        self.language = [language] if isinstance(language, str) else list(language)

    def set_license(self, license: str) -> None:
        self.license = license

    def add_tags(self, tags: str | list[str]) -> None:
        for tag in [tags] if isinstance(tags, str) else tags:
            if tag not in self.tags:
                self.tags.append(tag)

    def set_losses(self, losses: list[Any]) -> None:
        self.loss_names = sorted({type(loss).__name__ for loss in losses})
        self.add_tags([f"loss:{name}" for name in self.loss_names])

    def set_best_model_step(self, step: int) -> None:
        self.best_model_step = step

    def set_evaluation_metrics(self, evaluator: Any, metrics: dict[str, Any], epoch: float = 0, step: int = 0) -> None:
        """Keep the latest metrics per (evaluator class, name); the primary metric also goes to the logs."""
        entry = {"evaluator": type(evaluator).__name__, "name": getattr(evaluator, "name", ""),
                 "description": getattr(evaluator, "description", type(evaluator).__name__),
                 "primary_metric": getattr(evaluator, "primary_metric", None), "metrics": dict(metrics),
                 "epoch": epoch, "step": step}
        self.eval_results = [e for e in self.eval_results
                             if (e["evaluator"], e["name"]) != (entry["evaluator"], entry["name"])] + [entry]
        primary = entry["primary_metric"]
        if primary in metrics:
            if self.training_logs and self.training_logs[-1].get("Step") == step:
                self.training_logs[-1][primary] = metrics[primary]
            else:
                self.training_logs.append({"Epoch": epoch, "Step": step, primary: metrics[primary]})

    @property
    def trained(self) -> bool:
        return "generated_from_trainer" in self.tags

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """Every field (the model excluded), plus the front matter's derived keys.

        Example:
            >>> CrossEncoderModelCardData(license="mit").to_dict()["license"]
            'mit'
        """
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        ids = [d["id"] for d in [*self.train_datasets, *self.eval_datasets] if d.get("id")]
        data["datasets"] = list(dict.fromkeys(ids))
        if not data["model_name"]:
            data["model_name"] = self.default_model_name()
        index = self._model_index()
        if index:
            data["model-index"] = index
        return data

    def to_yaml(self) -> str:
        """The YAML front matter (only the hub's metadata keys, empty ones left out)."""
        data = self.to_dict()
        data["language"] = data["language"][0] if len(data["language"] or []) == 1 else data["language"]
        front = {k: data[k] for k in YAML_FIELDS if data.get(k) not in (None, [], {}, "")}
        return yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip()

    def default_model_name(self) -> str:
        return f"CrossEncoder based on {self.base_model}" if self.base_model else "Cross Encoder model"

    def _model_index(self) -> list[dict[str, Any]]:
        results = []
        for entry in self.eval_results:
            metrics = [{"type": key.removeprefix(f"{entry['name']}_") if entry["name"] else key, "value": value,
                        "name": key} for key, value in entry["metrics"].items() if isinstance(value, (int, float))]
            if metrics:
                results.append({"task": {"type": self.pipeline_tag or "text-ranking", "name": entry["description"]},
                                "dataset": {"name": entry["name"] or "eval", "type": entry["name"] or "eval"},
                                "metrics": metrics})
        if not results:
            return []
        return [{"name": self.model_name or self.default_model_name(), "results": results}]

    def update_from_front_matter(self, text: str) -> None:
        """Take the user fields of a saved card's front matter (a reloaded model keeps them)."""
        front = read_front_matter(text)
        if front.get("language"):
            self.set_language(front["language"])
        self.license = self.license or front.get("license")
        for tag in front.get("tags") or []:
            self.add_tags(str(tag))
        known = {d.get("id") for d in self.train_datasets}
        self.train_datasets += [{"id": d} for d in front.get("datasets") or [] if d not in known]


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML between the leading ``---`` lines of a card ({} when there is none or it is broken).

    Example:
        >>> read_front_matter("---\\nlicense: mit\\n---\\n# Title")
        {'license': 'mit'}
    """
    if not text.startswith("---"):
        return {}
    parts = text.split("\n---", 1)
    try:
        data = yaml.safe_load(parts[0][3:]) if len(parts) == 2 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value in ("", None) else str(value)

    return ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] * len(header)) + "|",
            *["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]]


def render_model_card(model: Any) -> str:
    """The README.md of `model` from ``model.model_card_data`` (front matter + markdown).

    Example:
        >>> text = render_model_card(model)  # doctest: +SKIP
        >>> text.startswith("---")  # doctest: +SKIP
        True
    """
    card: CrossEncoderModelCardData = model.model_card_data
    if card.model is None:
        card.register_model(model)
    name = card.model_name or card.default_model_name()
    base = card.base_model
    num_labels = int(model.num_labels)
    task = card.task_name or ("text reranking and semantic search" if num_labels == 1 else "text pair classification")
    trained_on = ", ".join(d.get("name") or d["id"] for d in card.train_datasets if d.get("name") or d.get("id"))
    activation = f"{type(model.activation_fn).__module__}.{type(model.activation_fn).__name__}"
    model_ref = card.model_id or "path/to/this/model"
    lines = ["---", card.to_yaml(), "---", "", f"# {name}", "",
             f"This is a [Cross Encoder](https://www.sbert.net/docs/cross_encoder/usage/usage.html) model"
             + (f" finetuned from `{base}`" if base else " trained") + (f" on {trained_on}" if trained_on else "")
             + f" with raycross. It computes scores for pairs of texts, which can be used for {task}.", "",
             "## Model Details", "", "- **Model Type:** Cross Encoder"]
    if base:
        lines.append(f"- **Base model:** `{base}`" + (f" (revision {card.base_model_revision})" if card.base_model_revision else ""))
    lines += [f"- **Maximum Sequence Length:** {model.max_length} tokens",
              f"- **Number of Output Labels:** {num_labels} label{'s' if num_labels > 1 else ''}",
              f"- **Activation Function:** `{activation}`"]
    if trained_on:
        lines.append(f"- **Training Datasets:** {trained_on}")
    if card.language:
        lines.append(f"- **Language:** {', '.join(card.language)}")
    if card.license:
        lines.append(f"- **License:** {card.license}")
    lines += ["", "## Usage", "", "```python",
              "from raycross import CrossEncoder  # or: from sentence_transformers import CrossEncoder", "",
              f'model = CrossEncoder("{model_ref}")',
              'scores = model.predict([("How many people live in Berlin?", "Berlin has 3.5 million inhabitants.")])',
              "```", ""]
    if card.eval_results:
        lines += ["## Evaluation", ""]
        for entry in card.eval_results:
            title = f"{entry['description']}" + (f" (`{entry['name']}`)" if entry["name"] else "")
            rows = [[f"**{k}**" if k == entry["primary_metric"] else k, v] for k, v in entry["metrics"].items()]
            lines += [f"#### {title}", "", *_md_table(["Metric", "Value"], rows), ""]
    if card.training_details:
        lines += ["## Training Details", "", card.training_details.rstrip(), ""]
    lines += ["### Framework Versions", "", *[f"- {k}: {v}" for k, v in card.version.items()]]
    return "\n".join(lines) + "\n"
