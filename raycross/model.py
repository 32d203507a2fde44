"""CrossEncoder: load, score, rank and save a sequence-pair scoring model.

Follows the sentence-transformers CrossEncoder (names and semantics) and saves checkpoints that load
in sentence-transformers, in plain transformers and in raycross alike.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)

from raycross import __version__, adapters
from raycross import st_modules
from raycross.causal import (DEFAULT_FALSE_TOKEN, DEFAULT_TRUE_TOKEN, LogitScore, causal_scores, is_causal_lm_config,
                             is_fsdp_sharded, token_id)
from raycross.prompts import ChatTemplate, prepend_prompt, resolve_prompt, validate_prompts
from raycross.model_card import CrossEncoderModelCardData, read_front_matter, render_model_card
from raycross.parallel import ParallelWrapper, make_wrapper, transformer_logits
from raycross.pooled_scorer import PooledScoreModel
from raycross.unpadded import is_right_padded, supports_unpadded

logger = logging.getLogger(__name__)

ST_CONFIG_FILE = st_modules.ST_CONFIG_FILE
MODULES_FILE = st_modules.MODULES_FILE
SBERT_CONFIG_FILE = st_modules.SBERT_CONFIG_FILE
_PREDICT_CHUNK = 16384  # pairs tokenized at once in predict(); bounds memory on huge inputs


def fullname(obj: Any) -> str:
    """Dotted import path of an object's class, e.g. ``torch.nn.modules.activation.Sigmoid``."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_from_string(dotted_path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    module_path, _, name = dotted_path.rpartition(".")
    if not module_path:
        raise ValueError(f"activation_fn path must be a dotted path like 'torch.nn.Sigmoid', got {dotted_path!r}")
    return getattr(importlib.import_module(module_path), name)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model", "merges.txt")


def _check_tokenizer_files(source: str) -> None:
    """A local model directory must hold its tokenizer (transformers would otherwise build an empty one)."""
    directory = Path(source)
    if directory.is_dir() and not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"model_name_or_path={source!r}: the directory holds no tokenizer files (one of {list(TOKENIZER_FILES)}); "
            "save the tokenizer with the model (tokenizer.save_pretrained) or copy its files there"
        )


def _looks_like_local_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else that does not exist locally is a bad path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf8") as f:
        return json.load(f)


def _validate_pair(pair: Any, index: int) -> tuple[str, str] | str:
    if isinstance(pair, str):
        return pair
    if isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair):
        return (pair[0], pair[1])
    found = type(pair).__name__
    if isinstance(pair, (tuple, list)):
        found = f"{found} of length {len(pair)} with types {[type(t).__name__ for t in pair]}"
    raise TypeError(f"pairs[{index}]: expected a (text, text) pair of two strings, found {found}")


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A deprecation notice, logged once per process (sentence-transformers' ``warning_once``)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def _legacy_predict_kwargs(method: str, pairs: Any, activation_fn: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Old keyword names of predict/rank (sentences/inputs, activation_fct, num_workers), as 6.2 maps them."""
    for old, new in (("sentences", "inputs"), ("activation_fct", "activation_fn")):
        if old in kwargs:
            _warn_once(f"The `{old}` argument was renamed and is now deprecated. Please use `{new}` instead.")
    if "num_workers" in kwargs:
        kwargs.pop("num_workers")
        _warn_once(f"The CrossEncoder.{method} `num_workers` argument is deprecated and has no effect. "
                   "It will be removed in a future version.")
    inputs = kwargs.pop("inputs", None)
    sentences = kwargs.pop("sentences", None)
    activation_fct = kwargs.pop("activation_fct", None)
    if kwargs:
        raise TypeError(f"CrossEncoder.{method}() got unexpected keyword arguments {sorted(kwargs)}")
    if pairs is None:
        pairs = inputs if inputs is not None else sentences
    return pairs, activation_fn if activation_fn is not None else activation_fct


_INIT_RENAMES = {"model_name": "model_name_or_path", "automodel_args": "model_kwargs", "tokenizer_args": "tokenizer_kwargs",
                 "processor_kwargs": "tokenizer_kwargs", "config_args": "config_kwargs", "cache_dir": "cache_folder",
                 "default_activation_function": "activation_fn"}


def _legacy_init_kwargs(given: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map CrossEncoder's old keyword names (and 6.2's ``processor_kwargs``) onto the current ones."""
    given = dict(given)
    for old, new in _INIT_RENAMES.items():
        if old in kwargs:
            value = kwargs.pop(old)
            if old != "processor_kwargs":
                _warn_once(f"The CrossEncoder `{old}` argument was renamed and is now deprecated. "
                           f"Please use `{new}` instead.")
            if given.get(new) is None:
                given[new] = value
    if "classifier_dropout" in kwargs:
        dropout = kwargs.pop("classifier_dropout")
        logger.warning("The CrossEncoder `classifier_dropout` argument is deprecated. Please use "
                       "`config_kwargs={'classifier_dropout': %s}` instead.", dropout)
        given["config_kwargs"] = {**(given.get("config_kwargs") or {}), "classifier_dropout": dropout}
    if kwargs:
        raise TypeError(f"CrossEncoder() got unexpected keyword arguments {sorted(kwargs)}")
    return given


def _normalize_pairs(pairs: Any) -> tuple[list[Any], bool]:
    """(list of pairs, whether a single pair was given): lists/tuples of pairs, one pair, numpy arrays."""
    if pairs is None:
        raise TypeError("pairs: expected a (text, text) pair or a list of pairs, found None")
    if isinstance(pairs, (str, bytes)):
        raise TypeError("pairs: expected a (text, text) pair or a list of pairs, found a single string")
    if isinstance(pairs, np.ndarray):
        if pairs.size and pairs.dtype.kind not in ("U", "O", "S"):
            raise TypeError(f"pairs: expected an array of strings, found dtype {pairs.dtype}")
        if pairs.ndim == 1 and pairs.size:
            return [tuple(pairs.tolist())], True
        return [tuple(row) for row in pairs.tolist()], False
    pairs = list(pairs)
    if len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        return [tuple(pairs)], True
    return pairs, False


def _convert_scores(scores: Tensor, single: bool, convert_to_numpy: bool, convert_to_tensor: bool) -> Any:
    if convert_to_tensor:
        return scores[0] if single else scores
    if convert_to_numpy:
        array = scores.float().numpy()
        return array[0] if single else array
    return scores[0] if single else list(scores)


class CrossEncoder(nn.Module):
    """A cross-encoder: scores (text_a, text_b) pairs jointly with a transformer and a classification head.

    Args:
        model_name_or_path: a local directory or a Hugging Face hub id. Any
            ``AutoModelForSequenceClassification`` checkpoint, a bare encoder (a fresh head is added), a
            ``*ForCausalLM`` checkpoint (an LLM reranker, see :mod:`raycross.causal`), or a
            sentence-transformers module directory of one of those.
        num_labels: number of outputs. ``None`` keeps a trained head's labels and means 1 for a bare encoder;
            a causal LM always has 1.
        max_length: maximum tokens per pair; defaults to min(tokenizer max, max position embeddings).
        activation_fn: applied to the logits in ``predict``; defaults to the stored one, else Sigmoid
            for 1 label and Identity otherwise.
        device: "cpu", "cuda", "cuda:1", ...; defaults to CUDA when available.
        trust_remote_code: allow custom model code and non-torch activation functions.
        model_kwargs / tokenizer_kwargs / config_kwargs: passed to the transformers loaders
            (e.g. ``model_kwargs={"torch_dtype": "bfloat16"}``).
        model_card_data: a :class:`~raycross.model_card.CrossEncoderModelCardData` (or a dict of its user
            fields: language, license, model_name, model_id, train_datasets, ...) for the model card.
        prompts / default_prompt_name: named prompts (``{"web": "Judge the passage: "}``) and the one used
            when ``predict``/``rank``/evaluators get neither ``prompt`` nor ``prompt_name``; saved with the model.
        processor_kwargs: sentence-transformers' name for ``tokenizer_kwargs`` (e.g. ``{"chat_template": ...}``).
        chat_template_kwargs: keyword arguments for the tokenizer's chat template (e.g.
            ``{"add_generation_prompt": True}``), used when the tokenizer has a template; saved with the model.
        score_tokens: (true token, false token or None) whose last-position logits score a causal LM;
            defaults to the stored tokens, else ``("yes", "no")``. Tokens or token ids.

    Example:
        >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        >>> model.predict([("how tall is everest", "Everest is 8,849 m high.")])  # doctest: +SKIP
        array(0.998..., dtype=float32)
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation_fn: Callable | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        cache_folder: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        model_card_data: CrossEncoderModelCardData | dict[str, Any] | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        score_tokens: tuple[str | int, str | int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self._parallel: ParallelWrapper | None = None  # see wrap_for_training
        self._parallel_bypass = False
        if kwargs:  # old keyword names, mapped as sentence-transformers 6.2 maps them
            given = {"model_name_or_path": model_name_or_path, "activation_fn": activation_fn,
                     "model_kwargs": model_kwargs, "tokenizer_kwargs": tokenizer_kwargs,
                     "config_kwargs": config_kwargs, "cache_folder": cache_folder}
            given = _legacy_init_kwargs(given, kwargs)
            model_name_or_path, activation_fn = given["model_name_or_path"], given["activation_fn"]
            model_kwargs, tokenizer_kwargs = given["model_kwargs"], given["tokenizer_kwargs"]
            config_kwargs, cache_folder = given["config_kwargs"], given["cache_folder"]
        if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 1):
            raise ValueError(f"num_labels must be an integer >= 1 or None, found {num_labels!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be an integer >= 1 or None, found {max_length!r}")
        if not isinstance(model_name_or_path, (str, os.PathLike)):
            raise TypeError(
                f"model_name_or_path must be a local directory or a hub id (str), found {type(model_name_or_path).__name__}"
            )

        self.trust_remote_code = trust_remote_code
        if isinstance(model_card_data, Mapping):
            model_card_data = CrossEncoderModelCardData.from_dict(model_card_data)
        if model_card_data is not None and not isinstance(model_card_data, CrossEncoderModelCardData):
            raise TypeError("model_card_data: expected a CrossEncoderModelCardData or a dict, found "
                            f"{type(model_card_data).__name__}")
        self.model_card_data = model_card_data or CrossEncoderModelCardData(local_files_only=local_files_only)
        object.__setattr__(self, "_adapter_tuner", None)
        adapter_dir, base = self._adapter_directory(str(model_name_or_path))
        if adapter_dir is not None:  # an adapter-only save: the base model, then the adapter on top
            model_name_or_path, num_labels = base, num_labels or adapters.saved_marker(adapter_dir).get("num_labels")
        self.adapter_base_model: str | None = None
        source = self._resolve_source(str(model_name_or_path))
        self.model_name_or_path = source
        local_dir = Path(source) if Path(source).is_dir() else None
        if local_dir is not None:
            layout = st_modules.read_layout(local_dir)
        else:  # a hub id: its module files (custom score tokens, message modality) decide how it scores
            layout_dir = st_modules.fetch_layout(source, revision=revision, token=token, cache_dir=cache_folder,
                                                 local_files_only=local_files_only)
            layout = st_modules.read_layout(layout_dir) if layout_dir is not None else None
            if layout is not None and layout.transformer_dir != layout_dir:
                raise ValueError(f"model_name_or_path={source!r}: a hub module directory with the transformer in a "
                                 "subfolder; download it and load the local directory")
        if layout is not None and local_dir is not None and layout.transformer_dir != local_dir:
            source, local_dir = str(layout.transformer_dir), layout.transformer_dir
        if processor_kwargs:
            tokenizer_kwargs = {**(tokenizer_kwargs or {}), **processor_kwargs}
        shared = {"trust_remote_code": trust_remote_code, "revision": revision, "token": token,
                  "cache_dir": cache_folder, "local_files_only": local_files_only}

        config_kwargs = dict(config_kwargs or {})
        try:
            config = AutoConfig.from_pretrained(source, **shared, **config_kwargs)
        except OSError as exc:
            raise OSError(
                f"model_name_or_path={source!r}: could not load a model config from the hub "
                f"(offline, unknown repository, or no access): {exc}"
            ) from exc
        causal = layout.task == "text-generation" if layout is not None else is_causal_lm_config(config)
        pooled = layout is not None and layout.task == "feature-extraction"
        if causal and num_labels not in (None, 1):
            raise ValueError(
                f"num_labels={num_labels}: a causal-LM reranker ({source!r}) scores with one true/false token logit "
                "and has num_labels=1; load a sequence-classification checkpoint for several labels"
            )
        architectures = getattr(config, "architectures", None) or []
        classifier_trained = causal or pooled or any(a.endswith("ForSequenceClassification") for a in architectures)
        if num_labels is None and not classifier_trained:
            num_labels = 1
        mismatched = num_labels is not None and classifier_trained and num_labels != config.num_labels
        if pooled:
            mismatched = False  # the Dense writing the scores holds the labels, checked once it is built
        elif num_labels is not None:
            config.num_labels = num_labels
        if mismatched:
            # A new label count replaces the trained head; hide the stale label names.
            config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            config.label2id = {v: k for k, v in config.id2label.items()}

        model_kwargs = dict(model_kwargs or {})
        if "torch_dtype" in model_kwargs:  # transformers >= 4.56 names it `dtype`
            model_kwargs.setdefault("dtype", model_kwargs.pop("torch_dtype"))
        if isinstance(model_kwargs.get("dtype"), str) and model_kwargs["dtype"] != "auto":
            model_kwargs["dtype"] = getattr(torch, model_kwargs["dtype"])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*newly initialized.*")
            auto_class = AutoModel if pooled else AutoModelForCausalLM if causal else AutoModelForSequenceClassification
            self.model: PreTrainedModel = auto_class.from_pretrained(
                source, config=config, ignore_mismatched_sizes=mismatched, **shared, **model_kwargs
            )
        if pooled:  # Transformer(feature-extraction) + Pooling + Dense...: one module (raycross.pooled_scorer)
            self.model = PooledScoreModel.from_directory(self.model, layout.root, layout.pooling_dir,
                                                         layout.steps, trust_remote_code)
            if num_labels not in (None, self.model.num_labels):
                raise ValueError(f"num_labels={num_labels}: {source!r} is a Transformer + Pooling + Dense chain whose "
                                 f"Dense writes {self.model.num_labels} scores; load it without num_labels")
        tokenizer_source = str(adapter_dir) if adapter_dir is not None else source
        _check_tokenizer_files(tokenizer_source)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **shared, **(tokenizer_kwargs or {}))
        if adapter_dir is not None:
            local_dir = adapter_dir
        self.score_head: LogitScore | None = None
        self._causal = causal
        if causal:
            self._setup_causal(layout, score_tokens)
        elif score_tokens is not None:
            raise ValueError(f"score_tokens={score_tokens!r} applies to causal-LM rerankers; {source!r} is a classifier")
        st_config = self._read_remote_or_local(local_dir, ST_CONFIG_FILE) or {}
        if st_config.get("model_type", "CrossEncoder") != "CrossEncoder":
            st_config = {}  # another model family's settings (e.g. a bi-encoder's prompts) do not apply
        saved_prompts = st_config.get("prompts") if isinstance(st_config.get("prompts"), dict) else {}
        self.prompts = validate_prompts({**saved_prompts, **(prompts or {})},
                                        default_prompt_name or st_config.get("default_prompt_name"))
        self.default_prompt_name = default_prompt_name or st_config.get("default_prompt_name")
        saved_kwargs = (layout.processing_kwargs.get("chat_template") if layout is not None else None) or {}
        self.chat_template_kwargs = {**saved_kwargs, **(chat_template_kwargs or {})}
        self._chat: ChatTemplate | None = None
        if self.tokenizer.chat_template and (layout is None or layout.uses_messages):
            self._chat = self._make_chat_template()

        self.max_length = max_length or self._default_max_length(local_dir)  # kept on the tokenizer
        if activation_fn is not None and not callable(activation_fn):
            raise TypeError(f"activation_fn: expected a callable (e.g. torch.nn.Sigmoid()), found "
                            f"{type(activation_fn).__name__} {activation_fn!r}")
        self.activation_fn = activation_fn or self._stored_activation_fn(local_dir) or self.default_activation_fn()

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.to(device)
        self._load_model_card(source, local_dir, revision)
        self.unpad_inputs = True  # padding-free forward (raycross.unpadded, raycross.unpadded_decoder)
        if adapter_dir is not None:
            self.load_adapter(adapter_dir, adapter_name=adapters.saved_marker(adapter_dir).get("adapter_name"))
            self.model_name_or_path = str(adapter_dir)
        self.eval()  # as transformers' from_pretrained: inference mode until a trainer calls .train()

    # ------------------------------------------------------------------ loading helpers
    @staticmethod
    def _adapter_directory(name: str) -> tuple[Path | None, str | None]:
        """(adapter directory, its base model) when `name` is an adapter-only save, else (None, None)."""
        path = Path(name).expanduser()
        if not (path / adapters.ADAPTER_CONFIG).is_file() or (path / "config.json").is_file():
            return None, None
        base = adapters.read_adapter_config(path).base_model_name_or_path
        if not base:
            raise ValueError(f"model_name_or_path={name!r}: adapter directory without base_model_name_or_path in "
                             f"{adapters.ADAPTER_CONFIG}; load the base model and call load_adapter({name!r})")
        return path, base

    @staticmethod
    def _resolve_source(name: str) -> str:
        path = Path(name).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ValueError(
                    f"model_name_or_path={name!r} is a directory but holds no model: config.json not found "
                    f"(found {sorted(p.name for p in path.iterdir())[:10]})"
                )
            return str(path)
        if path.exists():
            raise ValueError(f"model_name_or_path={name!r} is a file; expected a model directory or a hub id")
        if _looks_like_local_path(name):
            raise ValueError(f"model_name_or_path={name!r}: no such directory (and it is not a hub id)")
        return name

    def _setup_causal(self, layout: st_modules.ModuleLayout | None, score_tokens: Any) -> None:
        """Left padding, a pad token, and the LogitScore head (explicit tokens > stored ids > yes/no)."""
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if score_tokens is not None:
            self.set_score_tokens(*score_tokens) if isinstance(score_tokens, (tuple, list)) else self.set_score_tokens(score_tokens)
        elif layout is not None and layout.logit_score is not None:
            stored = layout.logit_score
            self.set_score_tokens(stored["true_token_id"], stored.get("false_token_id"))
        else:
            self.set_score_tokens(DEFAULT_TRUE_TOKEN, DEFAULT_FALSE_TOKEN)

    def set_score_tokens(self, true_token: str | int, false_token: str | int | None = None) -> None:
        """Score a causal LM by ``logit[true_token] - logit[false_token]`` (or ``logit[true_token]`` alone).

        Example:
            >>> model.set_score_tokens("yes", "no")  # doctest: +SKIP
        """
        if not self.is_causal:
            raise ValueError("set_score_tokens applies to causal-LM rerankers; this model is a sequence classifier")
        true_id = token_id(self.tokenizer, true_token, "true_token")
        false_id = None if false_token is None else token_id(self.tokenizer, false_token, "false_token")
        if true_id == false_id:
            raise ValueError(f"true_token={true_token!r} and false_token={false_token!r} are the same token id {true_id}")
        self.score_head = LogitScore(true_id, false_id)

    @property
    def is_causal(self) -> bool:
        """True for a causal-LM reranker (scored by the true/false token logits)."""
        return bool(getattr(self, "_causal", False))

    @property
    def chat_template(self) -> str | None:
        """The tokenizer's chat template when inputs are rendered with it, else None. Settable (validated).

        Example:
            >>> model.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"  # doctest: +SKIP
        """
        return self.tokenizer.chat_template if self._chat is not None else None

    @chat_template.setter
    def chat_template(self, template: str | None) -> None:
        if template is not None and not isinstance(template, str):
            raise TypeError(f"chat_template must be a Jinja template string or None, found {type(template).__name__}")
        previous = self.tokenizer.chat_template
        self.tokenizer.chat_template = template
        try:
            self._chat = self._make_chat_template() if template else None
        except ValueError:
            self.tokenizer.chat_template = previous
            raise

    def _make_chat_template(self) -> ChatTemplate:
        chat = ChatTemplate(self.tokenizer, getattr(self.config, "model_type", None), self.chat_template_kwargs)
        chat.check_pair_roles()
        return chat

    def _default_max_length(self, local_dir: Path | None) -> int:
        if local_dir is not None:
            sbert = _read_json(local_dir / SBERT_CONFIG_FILE)
            if sbert and isinstance(sbert.get("max_seq_length"), int):
                return sbert["max_seq_length"]
        limits = [getattr(self.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        if getattr(self.config, "model_type", None) in ("roberta", "xlm-roberta", "camembert") and limits:
            # RoBERTa-style positions are offset by padding_idx + 1.
            limits[0] = min(limits[0], getattr(self.config, "max_position_embeddings", 514) - 2)
        return min(limits) if limits else 512

    def _stored_activation_fn(self, local_dir: Path | None) -> nn.Module | None:
        # config_sentence_transformers.json wins: sentence-transformers >= 6 updates it on save while
        # it may leave an older marker in config.json untouched.
        path = None
        st_config = self._read_remote_or_local(local_dir, ST_CONFIG_FILE)
        st_marker = getattr(self.config, "sentence_transformers", None)
        if st_config and st_config.get("activation_fn"):
            path = st_config["activation_fn"]
        elif isinstance(st_marker, dict) and st_marker.get("activation_fn"):
            path = st_marker["activation_fn"]
        elif getattr(self.config, "sbert_ce_default_activation_function", None):
            path = self.config.sbert_ce_default_activation_function
        if path is None:
            return None
        if not (path.startswith("torch.") or self.trust_remote_code):
            logger.warning(
                "activation_fn %r stored with the model is not a torch class and trust_remote_code=False; "
                "using the default activation instead. Load with trust_remote_code=True to import it.",
                path,
            )
            return None
        where = f"the activation_fn {path!r} stored with the model ({local_dir or self.model_name_or_path})"
        try:
            activation = import_from_string(path)()
        except (ImportError, AttributeError, TypeError, ValueError) as error:
            raise ValueError(f"{where} cannot be built: {type(error).__name__}: {error}") from None
        if not callable(activation):
            raise TypeError(f"{where} is not callable: it gives {type(activation).__name__} {activation!r}")
        return activation

    def _load_model_card(self, source: str, local_dir: Path | None, revision: str | None) -> None:
        """Keep a saved README (reused on save while nothing changed) and its front matter's user fields."""
        card = self.model_card_data
        text = None
        if local_dir is not None and (local_dir / "README.md").is_file():
            text = (local_dir / "README.md").read_text(encoding="utf8")
        self._model_card_text = text
        front = read_front_matter(text) if text else {}
        card.update_from_front_matter(text or "")
        if front.get("base_model"):
            card.set_base_model(str(front["base_model"]))
        elif not card.base_model:
            card.set_base_model(source, revision)
        card.register_model(self)
        self._model_card_snapshot = card.to_yaml()

    def _read_remote_or_local(self, local_dir: Path | None, filename: str) -> dict[str, Any] | None:
        if local_dir is not None:
            return _read_json(local_dir / filename)
        try:
            from huggingface_hub import hf_hub_download

            return _read_json(Path(hf_hub_download(self.model_name_or_path, filename)))
        except Exception:  # optional file: absent on the hub or offline
            return None

    # ------------------------------------------------------------------ properties
    @property
    def hf_model(self) -> PreTrainedModel:
        """The bare transformers model (``self.model``; a parallel wrapper never replaces it)."""
        return self.model

    @property
    def config(self) -> PretrainedConfig:
        return self.hf_model.config

    @property
    def is_pooled(self) -> bool:
        """True for a Transformer(feature-extraction) + Pooling + Dense chain (:mod:`raycross.pooled_scorer`)."""
        return isinstance(self.hf_model, PooledScoreModel)

    @property
    def num_labels(self) -> int:
        if self.is_pooled:
            return self.hf_model.num_labels
        return 1 if self.is_causal else int(self.config.num_labels)

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    def default_activation_fn(self) -> nn.Module:
        """Sigmoid for a 1-label model, Identity otherwise."""
        return nn.Sigmoid() if self.num_labels == 1 else nn.Identity()

    @property
    def max_length(self) -> int:
        """Maximum tokens per pair; lives on the tokenizer (``tokenizer.model_max_length``), so setting
        either one changes both, as in sentence-transformers."""
        return int(self.tokenizer.model_max_length)

    @max_length.setter
    def max_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"max_length must be an integer >= 1, found {value!r}")
        self.tokenizer.model_max_length = value

    max_seq_length = max_length  # the sentence-transformers 6.2 name

    @property
    def default_activation_function(self) -> Callable:
        """Deprecated name of :attr:`activation_fn` (sentence-transformers < 4)."""
        warnings.warn("The `default_activation_function` property was renamed and is now deprecated. "
                      "Please use `activation_fn` instead.", DeprecationWarning, stacklevel=2)
        return self.activation_fn

    def get_default_activation_fn(self) -> nn.Module:
        """The activation stored with the model, else :meth:`default_activation_fn` (6.2 name)."""
        local_dir = Path(self.model_name_or_path) if Path(self.model_name_or_path).is_dir() else None
        return self._stored_activation_fn(local_dir) or self.default_activation_fn()

    # ------------------------------------------------------------------ multi-process scoring
    def start_multi_process_pool(self, target_devices: list[str] | None = None, backend: str = "process") -> dict[str, Any]:
        """Start scoring processes (or Ray actors with ``backend="ray"``), one per device; pass the pool
        to ``predict(..., pool=pool)`` / ``rank``; end it with :meth:`stop_multi_process_pool`.

        Example:
            >>> pool = model.start_multi_process_pool(["cpu", "cpu"])  # doctest: +SKIP
        """
        from raycross.multiprocess import start_pool

        return start_pool(self, target_devices, backend)

    @staticmethod
    def stop_multi_process_pool(pool: dict[str, Any]) -> None:
        """Stop the processes of a pool from :meth:`start_multi_process_pool`."""
        from raycross.multiprocess import stop_pool

        stop_pool(pool)

    def __setattr__(self, name: str, value: Any) -> None:
        # Keep activation_fn a plain attribute so it is not part of the state dict.
        if name in ("activation_fn", "_adapter_tuner"):  # not submodules: no state-dict entries
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ forward
    def preprocess(
        self,
        pairs: Sequence[tuple[str, str] | list[str] | str],
        prompt: str | None = None,
        tokenizer: Any = None,
        **kwargs: Any,
    ) -> Mapping[str, Tensor]:
        """Tokenize pairs: padded to the longest, truncated `longest_first` to `max_length`, CPU tensors.

        ``prompt`` is put before the first text (or sent as the system message with a chat template).
        Causal rerankers are left-padded. ``kwargs`` (e.g. sentence-transformers' ``task``) are accepted and unused.
        The one place where training and scoring turn texts into model inputs: the training pipeline calls
        it ahead of each step from its own thread, with its own `tokenizer` (a copy of ``self.tokenizer``:
        a fast tokenizer must not be shared between threads).

        Example:
            >>> features = model.preprocess([("a query", "a passage")], prompt="Judge: ")  # doctest: +SKIP
        """
        tokenizer = self.tokenizer if tokenizer is None else tokenizer
        if self._chat is not None:
            chat = self._chat
            if tokenizer is not chat.tokenizer:  # the same template, rendered with the caller's tokenizer
                chat = copy.copy(chat)
                chat.tokenizer = tokenizer
            encoded = chat.encode(pairs, prompt, self.max_length)
            return self._pad(encoded, np.arange(len(pairs)))
        pairs = prepend_prompt(pairs, prompt)
        if len(pairs) and not isinstance(pairs[0], str):
            first, second = zip(*pairs)
            return tokenizer(list(first), list(second), padding=True, truncation="longest_first",
                             max_length=self.max_length, return_tensors="pt")
        return tokenizer(list(pairs), padding=True, truncation="longest_first",
                         max_length=self.max_length, return_tensors="pt")

    tokenize = preprocess

    def _encode_unpadded(self, pairs: Sequence[tuple[str, str]], prompt: str | None = None) -> Mapping[str, list[list[int]]]:
        if self._chat is not None:
            return self._chat.encode(pairs, prompt, self.max_length)
        first, second = zip(*prepend_prompt(pairs, prompt))
        return self.tokenizer(list(first), list(second), padding=False, truncation="longest_first",
                              max_length=self.max_length)

    def _pad(self, encoded: Mapping[str, list[list[int]]], idx: np.ndarray) -> dict[str, Tensor]:
        """Pad the rows `idx` of an unpadded encoding into tensors, honouring the tokenizer's padding side."""
        rows = [encoded["input_ids"][i] for i in idx]
        width = max(len(r) for r in rows)
        left = self.tokenizer.padding_side == "left"
        pad_values = {"input_ids": self.tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
        out = {}
        for key, pad_value in pad_values.items():
            if key not in encoded:
                continue
            array = np.full((len(idx), width), pad_value, dtype=np.int64)
            for row, i in enumerate(idx):
                values = encoded[key][i]
                if left:
                    array[row, width - len(values):] = values
                else:
                    array[row, : len(values)] = values
            out[key] = torch.from_numpy(array)
        return out

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        """Raw logits of shape (batch, num_labels) for tokenized features (moved to the model's device).

        BERT-family models skip the padding and the last layer's non-[CLS] work (:mod:`raycross.unpadded`,
        same logits); set ``model.unpad_inputs = False`` to always run the plain transformers forward.
        Passes with gradients go through the parallel wrapper when there is one (see
        :meth:`wrap_for_training`); passes without (evaluation, inference) use the bare transformer.
        """
        device = self.device
        features = {k: v.to(device) for k, v in features.items() if isinstance(v, Tensor)}
        if self.is_causal:
            # FSDP2 gathers parameters in the root's and the layers' forward hooks: the whole-model forward only
            direct = not is_fsdp_sharded(self.hf_model)
            packed = getattr(self, "unpad_inputs", True) and direct
            return self._run(lambda module, f: causal_scores(module, self.score_head, f, packed, direct), features)
        if self.is_pooled:  # padding-free only where exact (decoder last-token pooling), never under FSDP2
            packed = getattr(self, "unpad_inputs", True) and not is_fsdp_sharded(self.hf_model)
            return self._run(lambda module, f: module(**f, packed=packed).logits, features)
        unpad = self._should_unpad(features)
        return self._run(lambda module, f: transformer_logits(module, f, unpad), features)

    def _run(self, fn: Callable[[nn.Module, dict[str, Tensor]], Tensor], features: dict[str, Tensor]) -> Tensor:
        """``fn(transformer, features)``: inside the parallel wrapper's forward for passes with gradients (its
        hooks sync them), on the bare transformer otherwise (inference, evaluation, ``unwrapped()``)."""
        if self._parallel is not None and torch.is_grad_enabled() and not self._parallel_bypass:
            return self._parallel.run(fn, features)
        return fn(self.model, features)

    def _should_unpad(self, features: Mapping[str, Tensor]) -> bool:
        mask = features.get("attention_mask")
        if not getattr(self, "unpad_inputs", True) or mask is None or mask.dim() != 2 or "input_ids" not in features:
            return False
        if set(features) - {"input_ids", "attention_mask", "token_type_ids"} or not supports_unpadded(self.hf_model):
            return False
        if is_fsdp_sharded(self.hf_model):
            return False  # FSDP2 all-gathers through the root's forward hooks: the plain forward only
        return is_right_padded(mask)

    # ------------------------------------------------------------------ parallel training
    def wrap_for_training(self, kind: str = "ddp", **kwargs: Any) -> None:
        """Wrap the transformer for data-parallel training (call on every worker, after ``.to(device)``).

        Args:
            kind: a key of :data:`raycross.parallel.WRAPPERS` ("ddp").
            **kwargs: passed to the wrapper (for DDP: ``DistributedDataParallel`` options such as
                ``find_unused_parameters``).

        Example:
            >>> model.wrap_for_training("ddp", find_unused_parameters=False)  # doctest: +SKIP
        """
        if self._parallel is not None:
            raise ValueError(f"kind: the model is already wrapped for training ({self._parallel.kind!r}); unwrap() first")
        self._parallel = make_wrapper(kind, self.model, **kwargs)
        self._parallel.train(self.training)

    def unwrap(self) -> None:
        """Remove the parallel wrapper (no-op without one); the bare transformer stays ``self.model``."""
        if self._parallel is not None:
            self.model = self._parallel.unwrap()
            self._parallel = None

    @property
    def parallel_kind(self) -> str | None:
        """The kind of the parallel wrapper ("ddp"), None when the model is not wrapped."""
        return None if self._parallel is None else self._parallel.kind

    @contextmanager
    def unwrapped(self) -> Iterator[CrossEncoder]:
        """Forward passes skip the parallel wrapper inside (scoring on one worker without collectives).

        Example:
            >>> with model.unwrapped():  # doctest: +SKIP
            ...     scores = model.predict(pairs)
        """
        previous = self._parallel_bypass
        self._parallel_bypass = True
        try:
            yield self
        finally:
            self._parallel_bypass = previous

    def gradient_sync(self, enabled: bool = True) -> Any:
        """A context for backward passes: sync gradients across workers (``enabled``) or only accumulate.

        Example:
            >>> with model.gradient_sync(last_micro_batch):  # doctest: +SKIP
            ...     loss.backward()
        """
        if self._parallel is None:
            return nullcontext()
        return self._parallel.gradient_sync(enabled)

    def train(self, mode: bool = True) -> CrossEncoder:
        super().train(mode)
        if getattr(self, "_parallel", None) is not None:
            self._parallel.train(mode)
        return self

    # ------------------------------------------------------------------ inference
    def predict(
        self,
        pairs: Sequence[tuple[str, str] | list[str]] | tuple[str, str] | np.ndarray | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | list[str] | None = None,
        pool: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray | Tensor | list[Tensor] | float:
        """Score pairs. Batches are sorted by length for speed; results come back in input order.

        Returns an array of shape (n,) for a 1-label model or (n, num_labels); a single pair gives a
        scalar (or a vector). Logits are cast to fp32 before the activation. ``prompt`` (or the prompt named
        ``prompt_name`` in ``model.prompts``, else the default prompt) is put before each pair.

        Inputs as in sentence-transformers 6.2: a list of pairs (tuples or lists), a single pair, or a
        numpy array of strings (2-D: one pair per row; 1-D: one pair). ``device=["cuda:0", "cuda:1"]`` or
        ``pool=model.start_multi_process_pool(...)`` scores in several processes (:mod:`raycross.multiprocess`).
        The old keywords ``sentences`` / ``inputs``, ``activation_fct`` and ``num_workers`` still work, with a
        deprecation warning.

        Example:
            >>> scores = model.predict([("q", "relevant doc"), ("q", "other doc")])  # doctest: +SKIP
        """
        pairs, activation_fn = _legacy_predict_kwargs("predict", pairs, activation_fn, kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, found {batch_size!r}")
        prompt = resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)
        pairs, single = _normalize_pairs(pairs)
        pairs = [_validate_pair(p, i) for i, p in enumerate(pairs)]
        if any(isinstance(p, str) for p in pairs):
            bad = next(i for i, p in enumerate(pairs) if isinstance(p, str))
            raise TypeError(f"pairs[{bad}]: expected a (text, text) pair of two strings, found str")
        activation = activation_fn if activation_fn is not None else self.activation_fn
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO

        if pool is not None or (isinstance(device, list) and device):
            from raycross.multiprocess import score_with_pool

            restored = score_with_pool(self, pairs, pool, device if isinstance(device, list) else None, chunk_size,
                                       batch_size, activation_fn, apply_softmax, prompt) if pairs else torch.empty(0)
            return _convert_scores(restored, single, convert_to_numpy, convert_to_tensor)
        if isinstance(device, (str, torch.device)):
            self.to(device)
        if not pairs:
            shape = (0,) if self.num_labels == 1 else (0, self.num_labels)
            empty = torch.empty(shape, dtype=torch.float32)
            if convert_to_tensor:
                return empty
            return empty.numpy() if convert_to_numpy else []

        scores: list[Tensor] = []
        positions: list[np.ndarray] = []
        was_training = self.training
        self.eval()
        progress = tqdm(total=len(pairs), desc="Scoring pairs", unit="pair", disable=not show_progress_bar)
        try:
            with torch.inference_mode():
                # Tokenize a chunk at once without padding, then batch by token length: each batch is
                # padded only to its own longest pair.
                for chunk_start in range(0, len(pairs), _PREDICT_CHUNK):
                    chunk = pairs[chunk_start : chunk_start + _PREDICT_CHUNK]
                    encoded = self._encode_unpadded(chunk, prompt)
                    lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(chunk))
                    order = np.argsort(-lengths, kind="stable")
                    for start in range(0, len(chunk), batch_size):
                        idx = order[start : start + batch_size]
                        logits = self(self._pad(encoded, idx)).float()
                        out = activation(logits) if activation is not None else logits
                        if apply_softmax and out.ndim == 2 and out.shape[1] > 1:
                            out = torch.softmax(out, dim=1)
                        if out.ndim == 2 and out.shape[1] == 1:
                            out = out[:, 0]
                        scores.append(out.detach().cpu())
                        positions.append(idx + chunk_start)
                        progress.update(len(idx))
        finally:
            progress.close()
            self.train(was_training)

        order = np.concatenate(positions)
        stacked = torch.cat(scores)
        restored = torch.empty_like(stacked)
        restored[torch.as_tensor(order)] = stacked
        return _convert_scores(restored, single, convert_to_numpy, convert_to_tensor)

    def rank(
        self,
        query: str | Sequence[str],
        documents: Sequence[str] | Sequence[Sequence[str]],
        top_k: int | None = None,
        return_documents: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        device: str | list[str] | None = None,
        pool: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Rank documents for a query: ``[{"corpus_id": i, "score": s, ("text": doc)}]``, best first.

        Given a list of queries (with a list of documents per query, or one list shared by all), all
        pairs are scored in one batched pass and a list of rankings is returned.

        Example:
            >>> model.rank("what is ray?", ["Ray scales Python.", "A ray of light."], top_k=1)  # doctest: +SKIP
            [{'corpus_id': 0, 'score': 0.97}]
        """
        resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)  # bad names fail first
        for name in ("convert_to_numpy", "convert_to_tensor", "apply_softmax"):  # as sentence-transformers 6.2
            if name in kwargs:
                kwargs.pop(name)
                _warn_once(f"The CrossEncoder.rank `{name}` argument is deprecated and has no effect, as `rank` "
                           "always returns Python floats. It will be removed in a future version.")
        _, activation_fn = _legacy_predict_kwargs("rank", None, activation_fn, kwargs)
        if self.num_labels != 1:
            raise ValueError(f"rank needs a model with num_labels=1 (one relevance score), this model has {self.num_labels}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 or None, found {top_k!r}")
        multi = not isinstance(query, str)
        queries = list(query) if multi else [query]
        if not all(isinstance(q, str) for q in queries):
            raise TypeError("query: expected a string or a list of strings")
        documents = list(documents)
        if documents and all(isinstance(d, str) for d in documents):
            docs_per_query = [documents] * len(queries)
        elif multi and len(documents) == len(queries) and all(not isinstance(d, str) for d in documents):
            docs_per_query = [list(d) for d in documents]
        elif not documents:
            docs_per_query = [[] for _ in queries]
        else:
            raise TypeError(
                "documents: expected a list of strings (or, with several queries, one list of strings per "
                f"query: {len(queries)} lists), found {len(documents)} items of types "
                f"{sorted({type(d).__name__ for d in documents})}"
            )
        pairs = [(q, d) for q, docs in zip(queries, docs_per_query) for d in docs]
        scores = self.predict(pairs, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                              show_progress_bar=show_progress_bar, activation_fn=activation_fn,
                              convert_to_numpy=True, device=device, pool=pool, chunk_size=chunk_size)
        rankings, offset = [], 0
        for docs in docs_per_query:
            query_scores = scores[offset : offset + len(docs)]
            offset += len(docs)
            order = np.argsort(-query_scores, kind="stable")[:top_k]
            ranking = []
            for i in order:
                entry = {"corpus_id": int(i), "score": float(query_scores[i])}
                if return_documents:
                    entry["text"] = docs[i]
                ranking.append(entry)
            rankings.append(ranking)
        return rankings if multi else rankings[0]

    # ------------------------------------------------------------------ adapters (peft; raycross.adapters)
    def add_adapter(self, adapter_config: Any, adapter_name: str = "default") -> None:
        """Add a fresh adapter (a peft ``LoraConfig`` or a dict of its arguments) and make it active.

        Only the adapter and the scoring head stay trainable; both are saved together. One adapter per model.

        Example:
            >>> model.add_adapter({"r": 8, "target_modules": ["query", "value"]})  # doctest: +SKIP
        """
        self._check_adapters_apply("add_adapter")
        config = adapters.as_lora_config(adapter_config)
        adapters.check_can_inject(self.hf_model, config, adapter_name)
        self._install_score_rows()
        self._adapter_tuner = adapters.inject(self.hf_model, config, adapter_name)
        self.adapter_base_model = self.adapter_base_model or self._base_reference()
        self.to(self.device)

    def load_adapter(self, peft_model_id: str | os.PathLike, adapter_name: str | None = None,
                     is_trainable: bool = False) -> None:
        """Load an adapter directory (adapter + head weights, peft format) onto this model and activate it.

        Example:
            >>> model.load_adapter("adapter-dir")  # doctest: +SKIP
        """
        self._check_adapters_apply("load_adapter")
        path = Path(peft_model_id)
        config = adapters.read_adapter_config(path)
        name = adapter_name or "default"
        adapters.check_can_inject(self.hf_model, config, name)
        self._install_score_rows()
        self._adapter_tuner = adapters.inject(self.hf_model, config, name)
        adapters.load_adapter_weights(self.hf_model, path, name)
        adapters.set_trainable(self.hf_model, is_trainable)
        self.adapter_base_model = config.base_model_name_or_path or self._base_reference()
        self.to(self.device)

    def _check_adapters_apply(self, method: str) -> None:
        if self.is_pooled:
            raise ValueError(f"{method}: LoRA adapters apply to sequence-classification and causal-LM rerankers; this "
                             "model is a Transformer + Pooling + Dense module chain (train it without an adapter)")

    def _install_score_rows(self) -> None:
        if self.is_causal and not adapters.adapter_names(self.hf_model):
            adapters.install_score_rows(self.hf_model, self.score_head.token_ids)

    def _require_adapter(self, method: str) -> Any:
        if self._adapter_tuner is None:
            raise ValueError(f"{method}: the model has no adapter; add one with add_adapter(...) or load_adapter(...)")
        return self._adapter_tuner

    @property
    def has_adapter(self) -> bool:
        """True when a peft adapter is attached."""
        return self._adapter_tuner is not None

    def active_adapters(self) -> list[str]:
        """Names of the active adapters."""
        return list(self._require_adapter("active_adapters").active_adapters)

    def active_adapter(self) -> str:
        """Name of the active adapter."""
        return self.active_adapters()[0]

    def set_adapter(self, adapter_name: str) -> None:
        """Activate the adapter `adapter_name`."""
        tuner = self._require_adapter("set_adapter")
        names = adapters.adapter_names(self.hf_model)
        if adapter_name not in names:
            raise ValueError(f"adapter_name: expected one of {names}, found {adapter_name!r}")
        tuner.set_adapter(adapter_name)

    def enable_adapters(self) -> None:
        """Score with the adapter (after :meth:`disable_adapters`)."""
        self._require_adapter("enable_adapters").enable_adapter_layers()

    def disable_adapters(self) -> None:
        """Score with the base weights only (the trained head stays)."""
        self._require_adapter("disable_adapters").disable_adapter_layers()

    def get_adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, Tensor]:
        """The adapter's and the head's weights, keyed as in peft's ``adapter_model.safetensors``."""
        self._require_adapter("get_adapter_state_dict")
        return adapters.adapter_state_dict(self.hf_model, adapter_name or self.active_adapter())

    def delete_adapter(self, adapter_name: str | None = None) -> None:
        """Remove the adapter (unmerged): the model is its base again, with the trained head."""
        tuner = self._require_adapter("delete_adapter")
        names = adapters.adapter_names(self.hf_model)
        if adapter_name is not None and adapter_name not in names:
            raise ValueError(f"adapter_name: expected one of {names}, found {adapter_name!r}")
        adapters.remove_adapter(tuner, self.hf_model, merge=False)
        self._adapter_tuner = None

    def merge_and_unload(self) -> None:
        """Merge the adapter into the base weights (in place): a plain transformers model again.

        Example:
            >>> model.merge_and_unload(); model.has_adapter  # doctest: +SKIP
            False
        """
        adapters.remove_adapter(self._require_adapter("merge_and_unload"), self.hf_model, merge=True)
        self._adapter_tuner = None

    def _base_reference(self) -> str:
        source = str(self.model_name_or_path)
        return str(Path(source).absolute()) if Path(source).is_dir() else source

    # ------------------------------------------------------------------ saving
    def save_pretrained(
        self,
        path: str | os.PathLike,
        safe_serialization: bool = True,
        model_name: str | None = None,
        create_model_card: bool = True,
        train_datasets: list[str] | None = None,
        merge_adapter: bool = False,
    ) -> None:
        """Write an HF checkpoint (safetensors), the tokenizer, the sentence-transformers markers and the
        model card (README.md; `model_name` sets the card's model id when it is not a local path,
        `train_datasets` adds hub dataset ids).

        With an adapter: the adapter and the head only (peft format, loads with ``CrossEncoder(path)``), or
        with ``merge_adapter=True`` a plain model with the adapter merged in.

        Example:
            >>> model.save_pretrained("my-reranker")  # doctest: +SKIP
            >>> CrossEncoder("my-reranker")  # doctest: +SKIP
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        activation_path = fullname(self.activation_fn)
        hf_model = self.hf_model
        hf_model.config.sentence_transformers = {"activation_fn": activation_path, "version": __version__}
        st_config: dict[str, Any] = {}
        if self.has_adapter and not merge_adapter:
            name = self.active_adapter()
            adapters.save_adapter(hf_model, path, name, self.adapter_base_model)
            st_config["raycross_adapter"] = {"num_labels": self.num_labels, "adapter_name": name}
        elif self.has_adapter:
            with adapters.untied_for_merge(hf_model):
                hf_model.save_pretrained(path, state_dict=adapters.merged_state_dict(hf_model),
                                         safe_serialization=safe_serialization)
        else:
            hf_model.save_pretrained(path, safe_serialization=safe_serialization)
        self.tokenizer.save_pretrained(path)
        import transformers

        st_config.update({
            "model_type": "CrossEncoder",
            "activation_fn": activation_path,
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "__version__": {"raycross": __version__, "transformers": transformers.__version__,
                            "pytorch": torch.__version__},
        })
        with open(path / ST_CONFIG_FILE, "w", encoding="utf8") as f:
            json.dump(st_config, f, indent=2, sort_keys=True)
        for stale in (MODULES_FILE, SBERT_CONFIG_FILE):
            (path / stale).unlink(missing_ok=True)
        if self.is_causal or self.is_pooled or self.prompts or self._chat is not None:
            # sentence-transformers reads LogitScore, Pooling/Dense, prompts and the message modality from module
            # directories only
            task = "text-generation" if self.is_causal else "feature-extraction" if self.is_pooled else "sequence-classification"
            st_modules.write_layout(
                path, task, self._chat.format if self._chat is not None else None,
                {"chat_template": self.chat_template_kwargs} if self.chat_template_kwargs else None,
                self.score_head.get_config_dict() if self.is_causal else None,
                self.hf_model.module_entries() if self.is_pooled else None,
            )
        if create_model_card:
            self._create_model_card(path, model_name, train_datasets)
        logger.info("Saved CrossEncoder to %s", path)

    def _create_model_card(self, path: Path, model_name: str | None, train_datasets: list[str] | None) -> None:
        card = self.model_card_data
        if model_name and not Path(model_name).exists() and not card.model_id:
            card.model_id = model_name
        known = {d.get("id") for d in card.train_datasets}
        card.train_datasets += [{"id": d} for d in train_datasets or [] if d not in known]
        text = getattr(self, "_model_card_text", None)
        if text and not card.trained and card.to_yaml() == getattr(self, "_model_card_snapshot", None):
            card_text = text  # a loaded, untrained, unchanged model keeps its card as it was
        else:
            card_text = render_model_card(self)
        (path / "README.md").write_text(card_text, encoding="utf8")

    save = save_pretrained

    def push_to_hub(
        self,
        repo_id: str,
        token: str | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str | None = None,
        local_model_path: str | None = None,
        exist_ok: bool = False,
        replace_model_card: bool = False,
        train_datasets: list[str] | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload the model (with its card) to the hub; returns the commit URL, or the pull request URL
        with ``create_pr=True``. ``local_model_path`` uploads that folder instead; an existing card on the
        hub is kept unless ``replace_model_card=True``.

        Example:
            >>> model.push_to_hub("my-user/my-reranker")  # doctest: +SKIP
        """
        from raycross.hub import push_model

        return push_model(self, repo_id, token=token, private=private, safe_serialization=safe_serialization,
                          commit_message=commit_message, local_model_path=local_model_path, exist_ok=exist_ok,
                          replace_model_card=replace_model_card, train_datasets=train_datasets, revision=revision,
                          create_pr=create_pr)

    # ------------------------------------------------------------------ legacy training
    def fit(self, train_dataloader: Any, **kwargs: Any) -> Any:
        """Legacy sentence-transformers training API (InputExample + DataLoader), run by the trainer.

        Example:
            >>> from torch.utils.data import DataLoader  # doctest: +SKIP
            >>> model.fit(DataLoader([InputExample(texts=["q", "d"], label=1.0)], batch_size=16), epochs=1)  # doctest: +SKIP
        """
        from raycross.fit import fit as _fit

        return _fit(self, train_dataloader, **kwargs)

    def __repr__(self) -> str:
        score = f", score_head={self.score_head.extra_repr()}" if self.is_causal else ""
        return (f"CrossEncoder(model={type(self.hf_model).__name__}, num_labels={self.num_labels}, "
                f"max_length={self.max_length}, activation_fn={fullname(self.activation_fn)}{score})")
