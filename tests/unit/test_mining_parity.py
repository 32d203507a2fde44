"""Mining option values sentence-transformers 6.2 accepts (negative margins, the deprecated `margin`,
min_score > max_score), 6.x embedding models offering only encode_query / encode_document, and HF
IterableDatasets: same rows as 6.2 or the same kind of error."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from raycross.mining import mine_hard_negatives

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.util import mine_hard_negatives as anchor_mine  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("man woman dog cat child water food house car street city red blue green white python code data "
         "list string file value error number").split()


@pytest.fixture(scope="module")
def tiny_st(tiny_encoder_path):
    return st.SentenceTransformer(str(tiny_encoder_path), device="cpu")


@pytest.fixture(scope="module")
def pairs():
    queries = [f"the {a} and the {b}" for a, b in zip(WORDS, WORDS[5:] + WORDS[:5])][:16]
    positives = [f"a {a} near a {b}" for a, b in zip(WORDS[1:], WORDS[9:] + WORDS[:9])][:16]
    return datasets.Dataset.from_dict({"query": queries, "passage": positives})


class OnlyQueryDocument:
    """A 6.x-style embedding model with encode_query / encode_document and no plain encode."""

    def __init__(self, model):
        self._model = model
        self.device = model.device
        self.model_card_data = model.model_card_data
        self.similarity = model.similarity
        self.similarity_pairwise = model.similarity_pairwise
        self.prompts = {}

    def encode_query(self, texts, **kwargs):
        return self._model.encode_query(texts, **kwargs)

    def encode_document(self, texts, **kwargs):
        return self._model.encode_document(texts, **kwargs)


def _same_rows(got, expected, context):
    assert got.column_names == expected.column_names, context
    a, b = got.to_list(), expected.to_list()
    assert len(a) == len(b), context
    for row_a, row_b in zip(a, b):
        for key in row_b:
            if key in ("scores", "score"):
                np.testing.assert_allclose(row_a[key], row_b[key], atol=1e-4, err_msg=str(context))
            else:
                assert row_a[key] == row_b[key], (context, key)


@pytest.mark.parametrize("options", [
    dict(absolute_margin=-0.02),
    dict(relative_margin=-0.05, num_negatives=2),
    dict(margin=-0.01),
    dict(min_score=0.99, max_score=0.5),
])
def test_option_values_the_anchor_accepts(tiny_st, pairs, options):
    kw = dict(options, output_format="n-tuple", output_scores=True, verbose=False)
    expected = anchor_mine(pairs, tiny_st, **kw)
    got = mine_hard_negatives(pairs, tiny_st, execution="local", **kw)
    _same_rows(got, expected, options)


def test_model_with_only_encode_query_and_encode_document(tiny_st, pairs):
    model = OnlyQueryDocument(tiny_st)
    assert not hasattr(model, "encode")
    kw = dict(output_format="labeled-pair", output_scores=True, num_negatives=2, verbose=False)
    _same_rows(mine_hard_negatives(pairs, model, execution="local", **kw), anchor_mine(pairs, model, **kw), "q/d")


def test_iterable_dataset_gets_a_value_error_naming_the_alternative(tiny_st, pairs, tiny_model_path):
    from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    stream = pairs.to_iterable_dataset()
    with pytest.raises(ValueError, match="dataset: an HF IterableDataset is not supported.*ray.data"):
        mine_hard_negatives(stream, tiny_st, execution="local", verbose=False)
    with pytest.raises(TypeError):  # 6.2 fails on len(); raycross says what to pass instead
        anchor_mine(stream, tiny_st, verbose=False)
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer as STTrainer

    labeled = pairs.add_column("label", [1.0] * len(pairs)).to_iterable_dataset()
    with pytest.raises(ValueError, match="IterableDataset"):
        STTrainer(STCrossEncoder(str(tiny_model_path)), train_dataset=labeled)
    with pytest.raises(ValueError, match="train_dataset: an HF IterableDataset is not supported.*from_generator"):
        CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"),
                            CrossEncoderTrainingArguments("unused-out"), train_dataset=labeled)
