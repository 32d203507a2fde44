"""Bad input to mine_hard_negatives fails with a clear error before any model is called or Ray starts."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from raycross.mining import MiningOptions, mine_hard_negatives

PAIRS = {"query": ["a cat", "a dog", "a fish"], "answer": ["feline", "canine", "water animal"], "label": [1, 1, 1]}


def never_called(texts):
    raise AssertionError("the model must not run when the input is invalid")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dataset=datasets.Dataset.from_dict({"query": [], "answer": []})), ValueError, "empty dataset"),
        (dict(dataset={"query": ["a"]}), ValueError, "at least two columns"),
        (dict(anchor_column_name="question"), ValueError, "anchor_column_name='question' is not a column.*'query'"),
        (dict(positive_column_name="passage"), ValueError, "positive_column_name='passage'"),
        (dict(positive_column_name="label"), TypeError, "column 'label': expected strings, found int64"),
        (dict(dataset={"q": ["a", None], "p": ["x", "y"]}), ValueError, "column 'q'.*null"),
        (
            dict(num_negatives=5, range_min=2, range_max=6),
            ValueError,
            "num_negatives=5 cannot be mined.*only range_max - range_min = 4",
        ),
        (dict(range_min=5, range_max=5), ValueError, "range_min must be smaller than range_max"),
        (dict(range_min=-1), ValueError, "range_min: expected an integer >= 0, found -1"),
        (dict(num_negatives=0), ValueError, "num_negatives: expected an integer >= 1"),
        (dict(output_format="pairs"), ValueError, "output_format: expected one of .*'triplet'.*found 'pairs'"),
        (dict(sampling_strategy="bottom"), ValueError, "sampling_strategy: expected one of .*found 'bottom'"),
        (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1"),
        (dict(execution="spark"), ValueError, "execution: expected one of"),
        (dict(index_type="hnsw"), ValueError, "index_type: expected one of"),
        (dict(model=42), TypeError, "model: expected a raycross Embedder"),
        (dict(query_prompt_name="query"), ValueError, "query_prompt_name: a callable model has no named prompts"),
        (dict(corpus=["ok", 3]), TypeError, r"corpus\[1\]: expected str"),
        (dict(dataset=datasets.DatasetDict({"train": datasets.Dataset.from_dict(PAIRS)})), TypeError, "DatasetDict"),
        (dict(cross_encoder=object()), TypeError, "cross_encoder: expected a CrossEncoder"),
    ],
)
def test_bad_input_fails_before_any_work(kwargs, error, match, forbid_ray_start):
    import ray

    call = dict(dataset=PAIRS, model=never_called, execution="ray", verbose=False)
    call.update(kwargs)
    with pytest.raises(error, match=match):
        mine_hard_negatives(**call)


def test_automatic_range_max_follows_the_anchor():
    base = MiningOptions.create(num_negatives=3)
    assert base.with_range_max(max_positives=2, rescoring=False).range_max == 0 + 3 + 2
    assert (
        MiningOptions.create(num_negatives=3, range_min=4, max_score=0.9).with_range_max(1, False).range_max
        == 4 + 30 + 1
    )
    # min_score alone widens the window only when a cross-encoder rescores (as in the anchor).
    assert MiningOptions.create(min_score=0.1).with_range_max(1, rescoring=False).range_max == 4
    assert MiningOptions.create(min_score=0.1).with_range_max(1, rescoring=True).range_max == 31


def test_include_positives_forces_n_tuple(caplog):
    opts = MiningOptions.create(include_positives=True, output_format="triplet")
    assert opts.output_format == "n-tuple"
    assert "n-tuple" in caplog.text


def test_default_columns_are_the_first_two():
    got = mine_hard_negatives(
        PAIRS,
        lambda t: np.eye(6, dtype=np.float32)[[len(x) % 6 for x in t]],
        num_negatives=1,
        execution="local",
        verbose=False,
    )
    assert got.column_names == ["query", "answer", "negative"]
