"""sentence-transformers module directories (``modules.json``) for cross-encoders: read and write.

sentence-transformers 6.2 saves a cross-encoder as a list of modules whose last one writes ``"scores"``
(docs/cross_encoder/usage/custom_models.rst, "Module Chains"). raycross reads the three chains documented there:
a ``Transformer`` (the HF model and its tokenizer, at the directory root) for a sequence classifier; a
``Transformer`` with ``transformer_task="text-generation"`` followed by a ``LogitScore`` (true/false token ids) for
a causal-LM reranker; and a ``Transformer(feature-extraction)`` (``AutoModel``), a ``Pooling`` and ``Dense`` layers
(``Normalize`` allowed between them) whose last writes ``"scores"`` (:mod:`raycross.pooled_scorer`). Other chains
(a ``Router``, multimodal ``any-to-any`` transformers, custom modules) get a ValueError naming the modules found.
raycross writes these layouts when a model needs it (a causal LM, a pooled chain, or prompts that
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
# task -> (the forward output the Transformer reads, the feature it writes)
_TASK_OUTPUT = {"text-generation": ("logits", "causal_logits"), "sequence-classification": ("logits", "scores"),
                "feature-extraction": ("last_hidden_state", "token_embeddings")}
_HEAD_KINDS = {"Pooling", "Dense", "Normalize"}
SUPPORTED_LAYOUTS = ("[Transformer(sequence-classification)], [Transformer(text-generation), LogitScore] or "
                     "[Transformer(feature-extraction), Pooling, Dense/Normalize..., Dense(module_output_name='scores')]")


@dataclass
class ModuleLayout:
    """What raycross needs from a module directory: the transformer's task and folder, its settings, the
    LogitScore configuration (causal rerankers) or the Pooling and Dense/Normalize folders (feature-extraction)."""

    task: str
    transformer_dir: Path
    modality_config: dict[str, Any] = field(default_factory=dict)
    processing_kwargs: dict[str, Any] = field(default_factory=dict)
    max_seq_length: int | None = None
    logit_score: dict[str, Any] | None = None
    pooling_dir: str | None = None
    steps: list[tuple[str, str]] = field(default_factory=list)  # (kind "Dense"/"Normalize", folder)
    root: Path | None = None  # the directory holding modules.json

    @property
    def uses_messages(self) -> bool:
        """True when the saved model renders inputs as chat messages (``message`` modality)."""
        return "message" in self.modality_config


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf8") as f:
        return json.load(f)


def _kind(module_type: Any) -> str | None:
    """'Transformer', 'LogitScore', 'Pooling', 'Dense' or 'Normalize' for sentence-transformers' module types."""
    if module_type in _TRANSFORMER_TYPES:
        return "Transformer"
    if module_type in _LOGIT_SCORE_TYPES:
        return "LogitScore"
    if isinstance(module_type, str) and module_type.startswith("sentence_transformers."):
        name = module_type.rsplit(".", 1)[-1]
        return name if name in _HEAD_KINDS else None
    return None


def _check_pooled_chain(directory: Path, modules: list[dict[str, Any]], config: dict[str, Any]) -> list[tuple[str, str]]:
    """The (kind, folder) steps after the Pooling of a feature-extraction chain; raises unless they end in scores."""
    where = directory / MODULES_FILE
    if config.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise ValueError(f"{where}: a feature-extraction Transformer feeding Pooling must write 'token_embeddings', "
                         f"found module_output_name={config.get('module_output_name')!r}")
    text = (config.get("modality_config") or {}).get("text", {})
    if text.get("method_output_name", "last_hidden_state") != "last_hidden_state" or text.get("method", "forward") != "forward":
        raise ValueError(f"{where}: raycross reads feature-extraction Transformers whose text modality is the forward's "
                         f"last_hidden_state, found {text}")
    pooling_dir = modules[1].get("path") or ""
    pooling = directory / pooling_dir / "config.json"
    if pooling.is_file() and _read_json(pooling).get("include_prompt", True) is False:
        raise ValueError(f"{pooling}: include_prompt=False (prompt tokens left out of the pooling) is not supported by "
                         "raycross; save the model with include_prompt=True")
    available, steps, scored = {"token_embeddings", "sentence_embedding"}, [], False
    for module in modules[2:]:
        kind, folder = _kind(module.get("type")), module.get("path") or ""
        step_path = directory / folder / "config.json"
        step = _read_json(step_path) if step_path.is_file() else {}
        source = step.get("module_input_name", "sentence_embedding")
        if source not in available:
            raise ValueError(f"{step_path}: the {kind} reads {source!r}, which no earlier module writes ({sorted(available)})")
        available.add(step.get("module_output_name") or source)
        scored = scored or (kind == "Dense" and step.get("module_output_name") == "scores")
        steps.append((kind, folder))
    if not scored:
        raise ValueError(f"{where}: the Transformer + Pooling chain writes no 'scores' (a cross-encoder needs a Dense with "
                         f"module_output_name='scores'); found modules {[m.get('type') for m in modules]}")
    return steps


def read_layout(directory: str | Path) -> ModuleLayout | None:
    """The cross-encoder layout of a sentence-transformers module directory, or None without ``modules.json``
    (or when the directory holds another model type, e.g. a SentenceTransformer bi-encoder).

    Raises:
        ValueError: for module lists raycross cannot score with, naming the modules found and those it reads.

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
    kinds = [_kind(t) for t in types or []]
    unsupported = ValueError(f"{modules_path}: raycross reads the cross-encoder module lists {SUPPORTED_LAYOUTS}; "
                             f"found modules {types}")
    if not kinds or kinds[0] != "Transformer" or None in kinds:
        raise unsupported
    transformer_dir = directory / (modules[0].get("path") or "")
    sbert = transformer_dir / SBERT_CONFIG_FILE
    config = _read_json(sbert) if sbert.is_file() else {}
    if kinds == ["Transformer"]:
        expected = "sequence-classification"
    elif kinds == ["Transformer", "LogitScore"]:
        expected = "text-generation"
    elif len(kinds) >= 3 and kinds[1] == "Pooling" and set(kinds[2:]) <= {"Dense", "Normalize"}:
        expected = "feature-extraction"
    else:
        raise unsupported
    task = config.get("transformer_task") or expected
    if task != expected:
        raise ValueError(
            f"{sbert}: transformer_task={task!r} with modules {types}; raycross expects {expected!r} for this list "
            f"(it reads {SUPPORTED_LAYOUTS})"
        )
    layout = ModuleLayout(
        task=task,
        transformer_dir=transformer_dir,
        modality_config=dict(config.get("modality_config") or {}),
        processing_kwargs=dict(config.get("processing_kwargs") or {}),
        max_seq_length=config.get("max_seq_length"),
        root=directory,
    )
    if task == "feature-extraction":
        layout.steps = _check_pooled_chain(directory, modules, config)
        layout.pooling_dir = modules[1].get("path") or ""
    elif task == "text-generation":
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
            if str(module.get("type", "")).endswith(".Dense"):  # a score head's weights (a few KB)
                download(f"{folder}/model.safetensors") or download(f"{folder}/pytorch_model.bin")
    return modules_path.parent


def write_layout(
    directory: str | Path,
    task: str,
    message_format: str | None,
    processing_kwargs: dict[str, Any] | None = None,
    logit_score: dict[str, Any] | None = None,
    head_modules: list[tuple[str, str]] | None = None,
) -> None:
    """Write ``modules.json``, the Transformer's ``sentence_bert_config.json`` and (causal) the LogitScore config.

    The HF model and tokenizer must already be at the directory root; `head_modules` lists the (type, folder)
    of modules after the Transformer whose folders are already written (feature-extraction: Pooling, Dense, ...).

    Example:
        >>> write_layout("out", "text-generation", None, logit_score={"true_token_id": 5, "false_token_id": 7})  # doctest: +SKIP
    """
    directory = Path(directory)
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER_TYPE}]
    method_output, module_output = _TASK_OUTPUT[task]
    modality: dict[str, Any] = {"text": {"method": "forward", "method_output_name": method_output}}
    if message_format:
        modality["message"] = {"method": "forward", "method_output_name": method_output, "format": message_format}
    config: dict[str, Any] = {"transformer_task": task, "modality_config": modality, "module_output_name": module_output}
    if processing_kwargs:
        config["processing_kwargs"] = processing_kwargs
    if logit_score is not None:
        modules.append({"idx": 1, "name": "1", "path": LOGIT_SCORE_DIR, "type": LOGIT_SCORE_TYPE})
        (directory / LOGIT_SCORE_DIR).mkdir(parents=True, exist_ok=True)
        with open(directory / LOGIT_SCORE_DIR / "config.json", "w", encoding="utf8") as f:
            json.dump(logit_score, f, indent=4)
    for module_type, folder in head_modules or []:
        idx = len(modules)
        modules.append({"idx": idx, "name": str(idx), "path": folder, "type": module_type})
    with open(directory / MODULES_FILE, "w", encoding="utf8") as f:
        json.dump(modules, f, indent=2)
    with open(directory / SBERT_CONFIG_FILE, "w", encoding="utf8") as f:
        json.dump(config, f, indent=4)
