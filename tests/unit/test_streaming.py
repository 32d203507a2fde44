"""Streamed training data: windows hand out every row exactly once per epoch, samplers work within the
window, resume replays to the exact batch, and the trainer streams parquet files / tables in process."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross.data.arrow_rows import ChunkedRows
from raycross.data.blocks import ParquetBlocks, TableBlocks
from raycross.training.streaming import WindowedBatches, choose_streaming, nominal_batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _table(n: int, n_queries: int | None = None, labels: bool = False) -> pa.Table:
    columns = {"query": [f"q{i % (n_queries or n)}" for i in range(n)], "doc": [f"d{i}" for i in range(n)]}
    if labels:
        columns["label"] = [i % 3 for i in range(n)]
    return pa.table(columns)


def _docs(stream, epoch, num_batches, skip=0):
    return [inputs[1] for inputs, _, _ in stream.epoch(epoch, num_batches, skip)]


@pytest.mark.parametrize("source", ["table", "parquet"])
@pytest.mark.parametrize("window", [8, 50, 1000])
def test_every_row_once_per_epoch_and_epochs_differ(tmp_path, source, window):
    table = _table(103)
    if source == "parquet":
        pq.write_table(table, tmp_path / "t.parquet", row_group_size=17)
        blocks = ParquetBlocks([str(tmp_path / "t.parquet")], block_rows=5, seed=3)
    else:
        blocks = TableBlocks(table, block_rows=7, seed=3)
    stream = WindowedBatches(blocks, ["query", "doc"], None, "batch_sampler", 4, seed=3, window_rows=window)
    k = nominal_batches("batch_sampler", 103, 4, False)
    epochs = [_docs(stream, e, k) for e in (0, 1)]
    for batches in epochs:
        assert len(batches) == k == 26 and [len(b) for b in batches[:-1]] == [4] * 25
        assert sorted(d for b in batches for d in b) == sorted(table.column("doc").to_pylist())
    assert epochs[0] != epochs[1]
    assert _docs(stream, 0, k) == epochs[0]  # seeded: the same again
    assert stream.peak_window_rows <= max(window, 8) + 7 + 4


def test_resume_skip_continues_at_the_exact_batch():
    stream = WindowedBatches(TableBlocks(_table(90), 8, seed=1), ["query", "doc"], None, "batch_sampler", 4, seed=1,
                             window_rows=20)
    full = _docs(stream, 2, 23)
    for skip in (0, 1, 7, 22):
        assert _docs(stream, 2, 23, skip=skip) == full[skip:]


def test_no_duplicates_within_the_window_and_every_row_once():
    table = _table(200, n_queries=40)  # every query text in 5 rows
    stream = WindowedBatches(TableBlocks(table, 16, seed=0), ["query", "doc"], None, "no_duplicates", 8, seed=0,
                             window_rows=64)
    natural = [shard.batch(rows)[0] for shard, batches in stream._windows(0) for rows in batches]
    for queries, docs in natural:
        assert len(set(queries)) == len(queries)  # no text twice in a batch
    assert Counter(d for _, docs in natural for d in docs) == Counter(table.column("doc").to_pylist())
    assert sum(len(docs) == 8 for _, docs in natural) >= len(natural) - 3  # full batches but for the tail
    promised = nominal_batches("no_duplicates", 200, 8, False)
    docs = [d for inputs, _, _ in stream.epoch(0, promised) for d in inputs[1]]
    assert len(docs) == len(set(docs)) and len(docs) >= 190  # the promised count cuts at most a short tail


def test_group_by_label_batches_hold_two_labels_and_top_up_fills_the_promise():
    table = _table(120, labels=True)
    stream = WindowedBatches(TableBlocks(table, 10, seed=2), ["query", "doc"], "label", "group_by_label", 8, seed=2,
                             window_rows=40)
    k = nominal_batches("group_by_label", 120, 8, False)
    got = list(stream.epoch(0, k + 3))  # more than the stream holds: topped up from the last window
    assert len(got) == k + 3
    for _, labels, n in got:
        counts = Counter(labels.tolist())
        assert n == 8 and len(counts) >= 2 and all(c % 2 == 0 for c in counts.values())


def test_chunked_rows_gather_without_combining():
    parts = [pa.table({"x": list(range(i * 10, i * 10 + 10))}) for i in range(5)]
    rows = ChunkedRows(pa.concat_tables(parts))
    idx = np.array([49, 0, 10, 11, 25, 3, 49])
    assert rows.take(idx).column("x").to_pylist() == idx.tolist()


def test_auto_streams_only_big_lazy_data(tmp_path):
    pq.write_table(_table(10), tmp_path / "small.parquet")
    assert choose_streaming(None, str(tmp_path / "small.parquet"), lazy=True, world_size=1) is False
    assert choose_streaming(True, {"q": ["a"]}, lazy=False, world_size=1) is True
    assert choose_streaming(None, str(tmp_path), lazy=True, world_size=1, num_rows=10**9,
                            sample_row={"q": "x" * 50}) is False  # parquet: metadata size wins
    import raycross.training.streaming as streaming

    assert streaming.estimated_bytes(None, num_rows=10**8, sample_row={"q": "x" * 50}) > streaming.STREAM_AUTO_BYTES


# ---------------------------------------------------------------------- through the trainer
class _Recorder:
    """Wraps a loss: records the documents of every batch it trains on."""

    def __init__(self):
        self.docs: list[list[str]] = []
        self.datasets: list[str] = []


def _recording_loss(model, recorder, name="train"):
    from raycross.losses import BinaryCrossEntropyLoss

    class Recording(BinaryCrossEntropyLoss):
        def forward(self, inputs, labels):
            recorder.docs.append(list(inputs[1]))
            recorder.datasets.append(name)
            return super().forward(inputs, labels)

    return Recording(model)


def _args(tmp_path, **kwargs):
    from raycross import CrossEncoderTrainingArguments

    defaults = dict(per_device_train_batch_size=4, save_strategy="no", report_to=[], disable_tqdm=True,
                    learning_rate=1e-4, logging_steps=1000)
    return CrossEncoderTrainingArguments(str(tmp_path), **{**defaults, **kwargs})


def _pairs(n, tag=""):
    return {"query": [f"a cat {i}" for i in range(n)], "doc": [f"{tag}doc{i}" for i in range(n)],
            "label": [float(i % 2) for i in range(n)]}


@pytest.mark.parametrize("streaming", [False, True])
def test_trainer_sees_every_row_once_per_epoch_streamed_or_in_memory(tiny_model_path, tmp_path, streaming):
    from raycross import CrossEncoder, CrossEncoderTrainer

    pq.write_table(pa.table(_pairs(42)), tmp_path / "train.parquet", row_group_size=10)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    recorder = _Recorder()
    args = _args(tmp_path / "out", num_train_epochs=2, streaming=streaming, streaming_window=12)
    trainer = CrossEncoderTrainer(model, args, train_dataset=str(tmp_path / "train.parquet"),
                                  loss=_recording_loss(model, recorder))
    assert bool(trainer.streamed) is streaming
    result = trainer.train()
    assert result.global_step == 2 * 11
    for epoch in (recorder.docs[:11], recorder.docs[11:]):
        assert Counter(d for b in epoch for d in b) == Counter(f"doc{i}" for i in range(42))


def test_mid_epoch_resume_continues_exactly(tiny_model_path, tmp_path):
    from transformers import TrainerCallback

    from raycross import CrossEncoder, CrossEncoderTrainer

    data = pa.table(_pairs(60))

    def run(out, recorder, callbacks=()):
        model = CrossEncoder(str(tiny_model_path), device="cpu")
        args = _args(out, max_steps=22, streaming=True, streaming_window=16, save_strategy="steps", save_steps=4)
        trainer = CrossEncoderTrainer(model, args, train_dataset=data, loss=_recording_loss(model, recorder),
                                      callbacks=list(callbacks))
        return trainer.train()

    reference = _Recorder()
    run(tmp_path / "ref", reference)

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 18:
                raise RuntimeError("worker lost")

    first = _Recorder()
    with pytest.raises(RuntimeError, match="worker lost"):
        run(tmp_path / "crash", first, [Crash()])
    resumed = _Recorder()
    result = run(tmp_path / "crash", resumed)  # from checkpoint-16: epoch 1, batch 1 of 15
    assert result.global_step == 22
    assert first.docs[:16] + resumed.docs == reference.docs
    assert len(resumed.docs) == 6 and first.docs[:18] == reference.docs[:18]


def test_multi_dataset_streams_keep_proportions(tiny_model_path, tmp_path):
    from raycross import CrossEncoder, CrossEncoderTrainer

    model = CrossEncoder(str(tiny_model_path), device="cpu")
    recorder = _Recorder()
    losses = {"small": _recording_loss(model, recorder, "small"), "big": _recording_loss(model, recorder, "big")}
    for sampler, expected in (("proportional", {"small": 5, "big": 15}), ("round_robin", {"small": 5, "big": 5})):
        recorder.docs.clear()
        recorder.datasets.clear()
        args = _args(tmp_path / sampler, num_train_epochs=1, streaming=True, streaming_window=8,
                     multi_dataset_batch_sampler=sampler)
        CrossEncoderTrainer(model, args, train_dataset={"small": _pairs(20, "s"), "big": _pairs(60, "b")},
                            loss=losses).train()
        assert Counter(recorder.datasets) == expected
        for name, docs in zip(recorder.datasets, recorder.docs):
            assert all(d.startswith(name[0]) for d in docs)


def test_row_check_sees_every_block_with_its_offset():
    seen = []
    stream = WindowedBatches(TableBlocks(_table(20), 6, seed=0), ["query", "doc"], None, "batch_sampler", 4, seed=0,
                             window_rows=8, row_check=lambda block, offset: seen.append((offset, block.num_rows)))
    list(stream.epoch(0, 5))
    sizes = [n for _, n in seen]
    assert sorted(sizes) == [2, 6, 6, 6] and [o for o, _ in seen] == [sum(sizes[:i]) for i in range(4)]


def test_a_bad_streamed_row_is_named_when_its_block_arrives(tiny_model_path, tmp_path):
    from raycross import CrossEncoder, CrossEncoderTrainer

    rows = _pairs(30)
    rows["doc"][13] = None
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet", row_group_size=10)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    trainer = CrossEncoderTrainer(model, _args(tmp_path / "out", max_steps=5, streaming=True, streaming_window=8),
                                  train_dataset=str(tmp_path / "bad.parquet"), loss=_recording_loss(model, _Recorder()))
    with pytest.raises(ValueError, match=r"column 'doc', row \d+: the text is None"):
        trainer.train()
