"""Teacher scoring in this process: every row shape, exact scores, resume after an interruption, and the
scored output training the distillation losses."""

from __future__ import annotations

import glob

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross.scoring import score_with_teacher
from raycross.scoring.chunks import ParquetRows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def length_teacher(pairs):
    """A deterministic teacher: score = len(query) * 100 + len(document)."""
    return [len(q) * 100 + len(d) for q, d in pairs]


def _read(path):
    return pq.read_table(sorted(glob.glob(f"{path}/part-*.parquet"))).to_pylist()


def test_pairs_tuples_and_lists_get_one_score_per_document(tmp_path):
    pairs = {"query": ["ab", "abc"], "doc": ["x", "xyz"], "label": [1, 0]}
    out = score_with_teacher(pairs, length_teacher, tmp_path / "pairs", execution="local", show_progress_bar=False)
    assert _read(out) == [{"query": "ab", "doc": "x", "score": 201.0}, {"query": "abc", "doc": "xyz", "score": 303.0}]

    tuples = [{"q": "a", "pos": "pp", "neg1": "n", "neg2": "nnnn"}]
    out = score_with_teacher(tuples, length_teacher, tmp_path / "tuples", execution="local", show_progress_bar=False)
    assert _read(out)[0]["scores"] == [102.0, 101.0, 104.0]

    lists = {"q": ["a", "bb"], "docs": [["x", "yy", "zzz"], ["w"]], "labels": [[1, 0, 0], [1]]}
    out = score_with_teacher(lists, length_teacher, tmp_path / "lists", execution="local", show_progress_bar=False)
    assert [r["scores"] for r in _read(out)] == [[101.0, 102.0, 103.0], [201.0]]
    assert "labels" not in _read(out)[0]  # hard labels replaced


def test_cross_encoder_teacher_gives_raw_logits(tiny_model, tmp_path):
    rows = {"query": ["a cat", "a dog", "the man"], "docs": [["a dog", "water"], ["food"], ["a woman", "red", "car"]]}
    out = score_with_teacher(rows, tiny_model, tmp_path / "ce", batch_size=2, chunk_rows=2, execution="local",
                             show_progress_bar=False)
    got = [r["scores"] for r in _read(out)]
    for row, scores in zip(pq.read_table(sorted(glob.glob(f"{out}/part-*.parquet"))).to_pylist(), got):
        import torch

        expected = tiny_model.predict([(row["query"], d) for d in row["docs"]], activation_fn=torch.nn.Identity())
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert [len(s) for s in got] == [2, 1, 3]


def test_rerun_skips_scored_chunks_and_finishes_the_rest(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"q": [f"q{i}" for i in range(10)], "d": ["d" * i for i in range(10)]}), src,
                   row_group_size=3)
    calls = []

    def flaky(pairs):
        calls.append(len(pairs))
        if len(calls) == 3:
            raise RuntimeError("teacher died")
        return length_teacher(pairs)

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="teacher died"):
        score_with_teacher(str(src), flaky, out, chunk_rows=4, execution="local", show_progress_bar=False)
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    calls.clear()
    score_with_teacher(str(src), flaky, out, chunk_rows=4, execution="local", show_progress_bar=False)
    assert calls == [2]  # only the last chunk (rows 8-9) was scored again
    rows = _read(out)
    assert [r["q"] for r in rows] == [f"q{i}" for i in range(10)]
    assert [r["score"] for r in rows] == [200.0 + i for i in range(10)]

    with pytest.raises(ValueError, match="chunk_rows"):
        score_with_teacher(str(src), flaky, out, chunk_rows=5, execution="local", show_progress_bar=False)


def test_parquet_rows_read_any_range_across_files_and_row_groups(tmp_path):
    for i in range(2):
        pq.write_table(pa.table({"x": list(range(i * 7, i * 7 + 7))}), tmp_path / f"{i}.parquet", row_group_size=3)
    rows = ParquetRows([str(tmp_path / "0.parquet"), str(tmp_path / "1.parquet")])
    assert rows.num_rows == 14
    for a, b in [(0, 14), (2, 9), (6, 7), (13, 14), (5, 5)]:
        assert rows.read(a, b).column("x").to_pylist() == list(range(a, b))


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(TypeError, match="teacher"):
        score_with_teacher({"q": ["a"], "d": ["b"]}, 42, tmp_path / "o")
    with pytest.raises(ValueError, match="query column and at least one document"):
        score_with_teacher({"q": ["a"], "label": [1]}, length_teacher, tmp_path / "o")
    with pytest.raises(ValueError, match="label_column"):
        score_with_teacher({"q": ["a"], "d": ["b"]}, length_teacher, tmp_path / "o", label_column="target")
    with pytest.raises(ValueError, match="one score per pair"):
        score_with_teacher({"q": ["a"], "d": ["b"]}, lambda p: [[1, 2]], tmp_path / "o2", execution="local",
                           show_progress_bar=False)


def test_scored_lists_and_tuples_train_listwise_and_margin_mse(tiny_model_path, tmp_path):
    from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from raycross.losses import ListNetLoss, MarginMSELoss

    rows = [{"q": f"a {w}", "pos": "a dog", "neg": "water", "neg2": "red car"} for w in ("cat", "man", "boy", "girl")]
    out = score_with_teacher(rows, length_teacher, tmp_path / "scored", execution="local", show_progress_bar=False)
    student = CrossEncoder(str(tiny_model_path), device="cpu")
    args = CrossEncoderTrainingArguments(str(tmp_path / "m"), max_steps=2, per_device_train_batch_size=2,
                                         save_strategy="no", report_to=[], disable_tqdm=True)
    result = CrossEncoderTrainer(student, args, train_dataset=out, loss=MarginMSELoss(student)).train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)

    lists = {"q": ["a cat", "a dog"], "docs": [["x", "yy", "zzz"], ["w", "vv"]]}
    out = score_with_teacher(lists, length_teacher, tmp_path / "lists", execution="local", show_progress_bar=False)
    args.output_dir = str(tmp_path / "m2")
    result = CrossEncoderTrainer(student, args, train_dataset=out, loss=ListNetLoss(student)).train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)
