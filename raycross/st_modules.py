"""sentence-transformers module directories (``modules.json``) for cross-encoders: read and write.

sentence-transformers 6.2 saves a cross-encoder as a list of modules: a ``Transformer`` (the HF model
and its tokenizer, at the directory root) for a sequence classifier, or a ``Transformer`` with
``transformer_task="text-generation"`` followed by a ``LogitScore`` (true/false token ids) for a causal-LM
reranker. raycross reads both layouts and writes them when a model needs it (a causal LM, or prompts that
sentence-transformers only reads from a module directory); plain classifiers keep the HF layout.

Example:
    >>> layout = read_layout("path/to/model")  # doctest: +SKIP
    >>> layout.task, layout.logit_score  # doctest: +SKIP
    ('text-generation', {'true_token_id': 9693, 'false_token_id': 2152, 'module_input_name': 'causal_logits'})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODULES_FILE = "modules.json"
SBERT_CONFIG_FILE = "sentence_bert_config.json"
ST_CONFIG_FILE = "config_sentence_transformers.json"
TRANSFORMER_TYPE = "sentence_transformers.base.modules.transformer.Transformer"
LOGIT_SCORE_TYPE = "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"
LOGIT_SCORE_DIR = "1_LogitScore"
_TRANSFORMER_TYPES = {TRANSFORMER_TYPE, "sentence_transformers.models.Transformer",
                      "sentence_transformers.models.transformer.Transformer"}
_LOGIT_SCORE_TYPES = {LOGIT_SCORE_TYPE, "sentence_transformers.cross_encoder.modules.LogitScore"}
_TASK_OUTPUT = {"text-generation": "causal_logits", "sequence-classification": "scores"}


@dataclass
class ModuleLayout:
    """What raycross needs from a module directory: the transformer's task and folder, its settings and
    the LogitScore configuration (causal rerankers)."""

    task: str
    transformer_dir: Path
    modality_config: dict[str, Any] = field(default_factory=dict)
    processing_kwargs: dict[str, Any] = field(default_factory=dict)
    max_seq_length: int | None = None
    logit_score: dict[str, Any] | None = None

    @property
    def uses_messages(self) -> bool:
        """True when the saved model renders inputs as chat messages (``message`` modality)."""
        return "message" in self.modality_config


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf8") as f:
        return json.load(f)


def read_layout(directory: str | Path) -> ModuleLayout | None:
    """The cross-encoder layout of a sentence-transformers module directory, or None without ``modules.json``
    (or when the directory holds another model type, e.g. a SentenceTransformer bi-encoder).

    Raises:
        ValueError: for module lists raycross cannot score with, naming the modules found.

    Example:
        >>> read_layout("/tmp/no-modules-here") is None  # doctest: +SKIP
        True
    """
    directory = Path(directory)
    modules_path = directory / MODULES_FILE
    if not modules_path.is_file():
        return None
    st_config_path = directory / ST_CONFIG_FILE
    st_config = _read_json(st_config_path) if st_config_path.is_file() else {}
    if st_config.get("model_type", "SentenceTransformer") != "CrossEncoder":
        # another model family's save (e.g. a bi-encoder): as sentence-transformers, build the default
        # cross-encoder on its transformer instead of reading its modules
        return None
    modules = _read_json(modules_path)
    types = [m.get("type") for m in modules] if isinstance(modules, list) else None
    supported = (
        "[Transformer(sequence-classification)] or [Transformer(text-generation), LogitScore]"
    )
    if not types or types[0] not in _TRANSFORMER_TYPES or len(types) > 2 or (
        len(types) == 2 and types[1] not in _LOGIT_SCORE_TYPES
    ):
        raise ValueError(
            f"{modules_path}: raycross reads the cross-encoder module lists {supported}; found modules {types}"
        )
    transformer_dir = directory / (modules[0].get("path") or "")
    sbert = transformer_dir / SBERT_CONFIG_FILE
    config = _read_json(sbert) if sbert.is_file() else {}
    task = config.get("transformer_task") or ("text-generation" if len(types) == 2 else "sequence-classification")
    expected = "text-generation" if len(types) == 2 else "sequence-classification"
    if task != expected:
        raise ValueError(
            f"{sbert}: transformer_task={task!r} with modules {types}; raycross expects {expected!r} for this list "
            f"({supported})"
        )
    layout = ModuleLayout(
        task=task,
        transformer_dir=transformer_dir,
        modality_config=dict(config.get("modality_config") or {}),
        processing_kwargs=dict(config.get("processing_kwargs") or {}),
        max_seq_length=config.get("max_seq_length"),
    )
    if len(types) == 2:
        score_config = directory / (modules[1].get("path") or LOGIT_SCORE_DIR) / "config.json"
        if not score_config.is_file():
            raise ValueError(f"{modules_path}: the LogitScore module has no config at {score_config}")
        layout.logit_score = _read_json(score_config)
        if not isinstance(layout.logit_score.get("true_token_id"), int):
            raise ValueError(f"{score_config}: true_token_id must be a token id, found {layout.logit_score.get('true_token_id')!r}")
    return layout


def fetch_layout(repo_id: str, **hub_kwargs: Any) -> Path | None:
    """Download the module files (not the weights) of a hub repository; their local folder, or None when the
    repository has no ``modules.json`` (or the hub is unreachable).

    Example:
        >>> read_layout(fetch_layout("tomaarsen/Qwen3-Reranker-0.6B-seq-cls"))  # doctest: +SKIP
    """
    from huggingface_hub import hf_hub_download

    def download(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo_id, filename, **hub_kwargs))
        except Exception:  # optional file: absent from the repository, or offline
            return None

    modules_path = download(MODULES_FILE)
    if modules_path is None:
        return None
    download(ST_CONFIG_FILE)
    modules = _read_json(modules_path)
    for module in modules if isinstance(modules, list) else []:
        folder = module.get("path") or ""
        download(f"{folder}/{SBERT_CONFIG_FILE}" if folder else SBERT_CONFIG_FILE)
        if folder:
            download(f"{folder}/config.json")
    return modules_path.parent


def write_layout(
    directory: str | Path,
    task: str,
    message_format: str | None,
    processing_kwargs: dict[str, Any] | None = None,
    logit_score: dict[str, Any] | None = None,
) -> None:
    """Write ``modules.json``, the Transformer's ``sentence_bert_config.json`` and (causal) the LogitScore config.

    The HF model and tokenizer must already be at the directory root.

    Example:
        >>> write_layout("out", "text-generation", None, logit_score={"true_token_id": 5, "false_token_id": 7})  # doctest: +SKIP
    """
    directory = Path(directory)
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER_TYPE}]
    modality = {"text": {"method": "forward", "method_output_name": "logits"}}
    if message_format:
        modality["message"] = {"method": "forward", "method_output_name": "logits", "format": message_format}
    config: dict[str, Any] = {"transformer_task": task, "modality_config": modality,
                              "module_output_name": _TASK_OUTPUT[task]}
    if processing_kwargs:
        config["processing_kwargs"] = processing_kwargs
    if logit_score is not None:
        modules.append({"idx": 1, "name": "1", "path": LOGIT_SCORE_DIR, "type": LOGIT_SCORE_TYPE})
        (directory / LOGIT_SCORE_DIR).mkdir(parents=True, exist_ok=True)
        with open(directory / LOGIT_SCORE_DIR / "config.json", "w", encoding="utf8") as f:
            json.dump(logit_score, f, indent=4)
    with open(directory / MODULES_FILE, "w", encoding="utf8") as f:
        json.dump(modules, f, indent=2)
    with open(directory / SBERT_CONFIG_FILE, "w", encoding="utf8") as f:
        json.dump(config, f, indent=4)
