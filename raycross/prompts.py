"""Prompts and chat templates for cross-encoder inputs, with sentence-transformers 6.2 semantics.

- A *prompt* is a text put before the input: prepended to the first text of a plain (text, text) pair, or
  sent as a ``system`` message when the tokenizer has a chat template.
- With a *chat template*, a pair becomes the messages ``[{"role": "query", ...}, {"role": "document", ...}]``
  (after the optional system prompt), rendered by the tokenizer's template and tokenized without extra
  special tokens. Truncated rows get the template's tail (e.g. the assistant prefix the model answers
  after) written back over their last tokens, as sentence-transformers does.

Example:
    >>> resolve_prompt({"web": "Judge: "}, "web", prompt=None, prompt_name=None)
    'Judge: '
    >>> pair_messages(("q", "d"), "flat", prompt="Judge")
    [{'role': 'system', 'content': 'Judge'}, {'role': 'query', 'content': 'q'}, {'role': 'document', 'content': 'd'}]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

logger = logging.getLogger(__name__)

PAIR_ROLES = ("query", "document")
# A baseline pair, then one probe per role varying only that role's content.
_ROLE_PROBES = (("alpha", "bravo"), ("charlie", "bravo"), ("alpha", "foxtrot"))
# Message formats sentence-transformers knows by model type; otherwise read from the template.
_KNOWN_FORMATS = {"apertus": "flat", "deepseek_v3": "flat", "gpt_oss": "flat", "seed_oss": "flat"}
_STRUCTURED_PATTERNS = ("content[0]", ".type", "'type'", '"type"', "item.type", "message.content[")
#: keyword arguments of ``apply_chat_template`` that size the tokenization rather than the render
_SIZE_KWARGS = frozenset({"padding", "truncation", "max_length", "return_tensors"})

MessageFormat = Literal["flat", "structured"]


def validate_prompts(prompts: Any, default_prompt_name: Any) -> dict[str, str]:
    """Check ``prompts`` (name -> text) and ``default_prompt_name``; return a clean copy of the prompts.

    Example:
        >>> validate_prompts({"query": "Q: "}, "query")
        {'query': 'Q: '}
    """
    if prompts is None:
        prompts = {}
    if not isinstance(prompts, Mapping):
        raise TypeError(f"prompts must be a dict of prompt name -> prompt text, found {type(prompts).__name__}")
    clean = {}
    for name, text in prompts.items():
        if not isinstance(name, str):
            raise TypeError(f"prompts: every name must be a string, found {type(name).__name__} {name!r}")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise TypeError(f"prompts[{name!r}] must be a string, found {type(text).__name__}")
        clean[name] = text
    if default_prompt_name is not None and default_prompt_name not in clean:
        raise ValueError(
            f"default_prompt_name={default_prompt_name!r} is not one of the prompt names {sorted(clean)}"
        )
    return clean


def resolve_prompt(
    prompts: Mapping[str, str], default_prompt_name: str | None, prompt: str | None, prompt_name: str | None
) -> str | None:
    """The prompt text to use: ``prompt`` if given, else ``prompts[prompt_name]``, else the default prompt.

    Example:
        >>> resolve_prompt({"a": "A: "}, None, prompt=None, prompt_name="a")
        'A: '
    """
    if prompt is not None:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string or None, found {type(prompt).__name__}")
        if prompt_name is not None:
            logger.warning("Both prompt and prompt_name were given; using prompt and ignoring prompt_name=%r", prompt_name)
        return prompt
    if prompt_name is not None:
        if prompt_name not in prompts:
            raise ValueError(f"prompt_name={prompt_name!r} is not one of the model's prompt names {sorted(prompts)}")
        return prompts[prompt_name]
    if default_prompt_name is not None:
        return prompts.get(default_prompt_name)
    return None


def dataset_prompt(prompts: str | Mapping[str, str] | None, dataset: str | None) -> str | None:
    """The training prompt of one dataset: the single prompt, or ``prompts[dataset]`` (None when unnamed).

    Example:
        >>> dataset_prompt({"wiki": "Wiki: "}, "wiki"), dataset_prompt("Q: ", "any")
        ('Wiki: ', 'Q: ')
    """
    if prompts is None or isinstance(prompts, str):
        return prompts
    return prompts.get(dataset) if dataset is not None else None


def prepend_prompt(pairs: Sequence[Any], prompt: str | None) -> list[Any]:
    """Put ``prompt`` before the first text of each pair (or before each single text).

    Example:
        >>> prepend_prompt([("q", "d")], "Judge: ")
        [('Judge: q', 'd')]
    """
    if not prompt:
        return list(pairs)
    return [prompt + p if isinstance(p, str) else (prompt + p[0], *p[1:]) for p in pairs]


def message_format(template: str | None, model_type: str | None = None) -> MessageFormat:
    """``"flat"`` (content is a string) or ``"structured"`` (content is a list of typed parts), as
    sentence-transformers infers it from the model type or the template text."""
    if model_type in _KNOWN_FORMATS:
        return _KNOWN_FORMATS[model_type]  # type: ignore[return-value]
    if not isinstance(template, str) or not template:
        return "structured"
    return "structured" if any(p in template for p in _STRUCTURED_PATTERNS) else "flat"


def _message(role: str, text: str, fmt: MessageFormat) -> dict[str, Any]:
    return {"role": role, "content": text if fmt == "flat" else [{"type": "text", "text": text}]}


def pair_messages(pair: Sequence[str], fmt: MessageFormat, prompt: str | None = None) -> list[dict[str, Any]]:
    """The chat messages of one (query, document) pair, after an optional system prompt."""
    messages = [_message("system", prompt, fmt)] if prompt else []
    if isinstance(pair, str):
        return messages + [_message("user", pair, fmt)]
    return messages + [_message(role, text, fmt) for role, text in zip(PAIR_ROLES, pair, strict=True)]


class ChatTemplate:
    """Renders pairs with a tokenizer's chat template and tokenizes them like sentence-transformers 6.2.

    Args:
        tokenizer: a transformers tokenizer whose ``chat_template`` is set.
        model_type: the model's ``config.model_type`` (picks the message format for a few families).
        template_kwargs: keyword arguments for ``apply_chat_template`` (e.g. ``{"add_generation_prompt": True}``);
            ``restore_suffix=False`` turns off writing the template tail back onto truncated rows.

    Example:
        >>> chat = ChatTemplate(tokenizer, "qwen3")  # doctest: +SKIP
        >>> chat.encode([("what is ray?", "Ray scales Python.")], prompt=None, max_length=512)  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, model_type: str | None = None, template_kwargs: Mapping[str, Any] | None = None):
        self.tokenizer = tokenizer
        kwargs = dict(template_kwargs or {})
        self.restore_suffix = bool(kwargs.pop("restore_suffix", True))
        size = sorted(_SIZE_KWARGS & kwargs.keys())
        if size:
            raise ValueError(
                f"chat template kwargs {size} size the tokenization; use CrossEncoder(max_length=...) instead"
            )
        self.template_kwargs = kwargs
        self.format: MessageFormat = message_format(tokenizer.chat_template, model_type)
        self._suffix_cache: dict[str | None, list[int]] = {}

    def render(self, pairs: Sequence[Any], prompt: str | None = None) -> list[str]:
        """The rendered prompt text of each pair."""
        conversations = [pair_messages(p, self.format, prompt) for p in pairs]
        return list(self.tokenizer.apply_chat_template(conversations, tokenize=False, **self.template_kwargs))

    def check_pair_roles(self) -> None:
        """Raise a ValueError when the template does not carry both the query and the document into the text."""
        try:
            base, *varied = (self.render([probe])[0] for probe in _ROLE_PROBES)
        except Exception as exc:  # a template that raises on the pair roles
            raise ValueError(
                f"chat_template: rendering a (query, document) pair raised {type(exc).__name__}: {exc}. "
                "A cross-encoder chat template must render the 'query' and 'document' roles."
            ) from exc
        dropped = [role for role, text in zip(PAIR_ROLES, varied) if text == base]
        if dropped:
            raise ValueError(
                f"chat_template: the {' and '.join(repr(r) for r in dropped)} message content does not reach the "
                "rendered text. A cross-encoder chat template must place both roles, e.g. "
                "'{% for m in messages %}{% if m.role == \"query\" %}<Query>: {{ m.content }}{% endif %}"
                "{% if m.role == \"document\" %}<Document>: {{ m.content }}{% endif %}{% endfor %}'"
            )

    def encode(self, pairs: Sequence[Any], prompt: str | None, max_length: int) -> dict[str, list[list[int]]]:
        """Token ids (unpadded lists) of the rendered pairs, truncated to ``max_length`` with the tail restored."""
        encoded = self.tokenizer(
            self.render(pairs, prompt), add_special_tokens=False, truncation=True, max_length=max_length, padding=False
        )
        encoded = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
        if self.restore_suffix:
            suffix = None
            for row in encoded["input_ids"]:
                if len(row) >= max_length:
                    suffix = self.suffix_ids(prompt) if suffix is None else suffix
                    keep = min(len(suffix), len(row))
                    if keep:
                        row[-keep:] = suffix[-keep:]
        return encoded

    def suffix_ids(self, prompt: str | None) -> list[int]:
        """Token ids the template always puts after the content (two renders with different fillers)."""
        if prompt not in self._suffix_cache:
            first, second = (
                self.tokenizer(text, add_special_tokens=False)["input_ids"]
                for text in self.render([("0", "0"), ("1 2 3 4", "1 2 3 4")], prompt)
            )
            count = 0
            for a, b in zip(reversed(first), reversed(second)):
                if a != b:
                    break
                count += 1
            self._suffix_cache[prompt] = first[len(first) - count:] if 0 < count < min(len(first), len(second)) else []
        return self._suffix_cache[prompt]
