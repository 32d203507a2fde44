"""CrossEncoderTrainingArguments, the batch samplers, the multi-dataset schedule and the optimizer setup.

Pure functions: every expectation is recomputed here independently (brute-force loops over rows).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from raycross.training import BatchSamplers, CrossEncoderTrainingArguments, MultiDatasetBatchSamplers
from raycross.training.arguments import IntervalStrategy, SchedulerType
from raycross.training.optim import create_optimizer, create_scheduler, decay_parameter_names, lr_factor
from raycross.training.samplers import (
    ShardSampler,
    TextIds,
    dataset_schedule,
    fixed_epoch_batches,
    group_by_label_batches,
    group_by_label_num_batches,
    label_groups,
    length_grouped_batches,
    no_duplicate_batches,
    steps_per_epoch,
)


# ---------------------------------------------------------------------- arguments
def test_defaults_follow_transformers():
    args = CrossEncoderTrainingArguments("out")
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size) == (5e-5, 3.0, 8)
    assert args.lr_scheduler_type is SchedulerType.LINEAR
    assert args.batch_sampler is BatchSamplers.BATCH_SAMPLER
    assert args.multi_dataset_batch_sampler is MultiDatasetBatchSamplers.PROPORTIONAL
    assert args.save_strategy is IntervalStrategy.STEPS and args.save_steps == 500
    assert args.num_workers == 0 and args.world_size == 1
    assert args.run_name == "out" and args.report_to == []


def test_strategy_strings_and_derived_values():
    args = CrossEncoderTrainingArguments(
        "o", eval_strategy="steps", logging_steps=7, load_best_model_at_end=True, save_steps=14,
        batch_sampler="no_duplicates", report_to="all", num_workers=3, gradient_accumulation_steps=2,
    )
    assert args.eval_steps == 7  # falls back to logging_steps, as in transformers
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False
    assert args.batch_sampler is BatchSamplers.NO_DUPLICATES
    assert args.report_to == ["tensorboard", "wandb", "mlflow"]  # "all": every installed integration, as transformers
    assert args.train_batch_size == 8 * 3 * 2
    assert CrossEncoderTrainingArguments("o", metric_for_best_model="eval_dev_ndcg@10").greater_is_better is True


def test_fractional_steps_and_warmup():
    assert CrossEncoderTrainingArguments.resolve_steps(0.1, max_steps=95) == math.ceil(9.5)
    assert CrossEncoderTrainingArguments.resolve_steps(25, max_steps=95) == 25
    assert CrossEncoderTrainingArguments.resolve_steps(None, max_steps=95) is None
    assert CrossEncoderTrainingArguments("o", warmup_ratio=0.1).get_warmup_steps(95) == 10
    assert CrossEncoderTrainingArguments("o", warmup_steps=0.2).get_warmup_steps(95) == 19
    assert CrossEncoderTrainingArguments("o", warmup_steps=7, warmup_ratio=0.5).get_warmup_steps(95) == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
        ({"gradient_accumulation_steps": 1.5}, "gradient_accumulation_steps"),
        ({"fp16": True, "bf16": True}, "fp16 and bf16"),
        ({"lr_scheduler_type": "cosine_annealing"}, "lr_scheduler_type"),
        ({"optim": "adamw_magic"}, "optim: expected one of transformers' optimizers"),
        ({"learning_rate_mapping": {"(": 1e-3}}, "learning_rate_mapping"),
        ({"batch_sampler": "random"}, "batch_sampler"),
        ({"multi_dataset_batch_sampler": "mixed"}, "multi_dataset_batch_sampler"),
        ({"eval_strategy": "sometimes"}, "eval_strategy"),
        ({"save_steps": 2.5}, "save_steps"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
        ({"num_workers": -1}, "num_workers"),
        ({"max_steps": 0}, "max_steps"),
        ({"save_total_limit": 0}, "save_total_limit"),
        ({"batch_sampler": "group_by_label", "per_device_train_batch_size": 6 - 1}, "even batch size"),
        ({"load_best_model_at_end": True}, "needs evaluations"),
        ({"load_best_model_at_end": True, "eval_strategy": "epoch"}, "save_strategy to match"),
        ({"load_best_model_at_end": True, "eval_strategy": "steps", "eval_steps": 3, "save_steps": 10},
         "multiple of eval_steps"),
        ({"report_to": "comet_ml"}, "report_to"),
        ({"resources_per_worker": {"CPU": -1}}, "resources_per_worker"),
        ({"group_by_length": True, "batch_sampler": "no_duplicates"}, "group_by_length"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CrossEncoderTrainingArguments("out", **kwargs)


# ---------------------------------------------------------------------- samplers
def _brute_force_has_duplicate(rows_texts: list[list[str]], batch: np.ndarray) -> bool:
    seen: set[str] = set()
    for i in batch.tolist():
        texts = set(rows_texts[i])
        if texts & seen:
            return True
        seen |= texts
    return False


def test_no_duplicates_batches_never_repeat_a_text_and_use_every_row():
    rng = np.random.default_rng(0)
    queries = [f"query {i // 6}" for i in range(600)]  # every query appears in 6 rows
    passages = [f"passage {rng.integers(0, 300)}" for _ in range(600)]  # random repeats
    passages[::50] = queries[::50]  # a passage equal to another row's query counts as a duplicate
    ids = TextIds.from_columns([queries, passages])
    rows_texts = [[q, p] for q, p in zip(queries, passages)]
    batches = no_duplicate_batches(ids, 16, np.random.default_rng(1), drop_last=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(600))
    assert not any(_brute_force_has_duplicate(rows_texts, b) for b in batches)
    assert sum(len(b) == 16 for b in batches) >= len(batches) - 8  # almost all batches are full


def test_text_ids_cover_list_columns():
    ids = TextIds.from_columns([["q1", "q2"], [["d1", "q2"], ["d1"]]])
    row0, row1 = ids.row(0).tolist(), ids.row(1).tolist()
    assert len(row0) == 3 and len(row1) == 2
    assert set(row0) & set(row1)  # q2 and d1 are shared between the rows


def test_group_by_label_batches_hold_two_labels_with_two_rows_each():
    labels = np.array([0] * 40 + [1] * 25 + [2] * 9 + [3] * 1)
    groups = label_groups(labels)
    for batch_size in (4, 6, 8):
        batches = group_by_label_batches(groups, batch_size, np.random.default_rng(batch_size), drop_last=False)
        assert len(batches) == group_by_label_num_batches(groups, batch_size, drop_last=False)
        for batch in batches:
            counts = Counter(labels[batch].tolist())
            assert len(counts) >= 2 and min(counts.values()) >= 2, counts
        used = np.concatenate(batches)
        assert len(set(used.tolist())) == len(used)  # no row twice
        assert 3 not in set(labels[used].tolist())  # a label with a single row is never used


def test_length_grouped_batches_cut_padding_and_cover_every_row():
    from raycross.data import to_arrow as to_arrow_table
    from raycross.training.tables import Shard

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=2000)
    grouped = length_grouped_batches(lengths, 16, np.random.default_rng(1), drop_last=False)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(2000))
    assert lengths[grouped[0]].max() == lengths.max()  # the longest batch comes first
    plain = np.array_split(rng.permutation(2000), len(grouped))

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    assert padding(grouped) < 0.2 * padding(plain)
    table = to_arrow_table({"q": ["ab", "cde"], "docs": [["x", "yy"], ["zzz"]], "labels": [[1, 0], [1]]})
    assert Shard(table, ["q", "docs"], "labels").text_lengths().tolist() == [2 + 1 + 2, 3 + 3]


def test_fixed_epoch_batches_are_reproducible_and_exactly_counted():
    sampler = ShardSampler("batch_sampler", num_rows=50, batch_size=8, seed=3)
    assert sampler.natural_num_batches() == 7
    first = fixed_epoch_batches(sampler, epoch=0, num_batches=7)
    assert [len(b) for b in first] == [8] * 6 + [2]
    assert sorted(np.concatenate(first).tolist()) == list(range(50))
    assert all(np.array_equal(a, b) for a, b in zip(first, fixed_epoch_batches(sampler, 0, 7)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(fixed_epoch_batches(sampler, 1, 7)))
    longer = fixed_epoch_batches(sampler, epoch=0, num_batches=10)  # a bigger shard elsewhere: refill
    assert len(longer) == 10 and all(np.array_equal(a, b) for a, b in zip(first, longer))


def test_proportional_schedule_uses_every_batch_and_mixes():
    counts = [30, 10, 5]
    schedule = dataset_schedule("proportional", counts, seed=1, epoch=0)
    assert np.bincount(schedule).tolist() == counts
    assert len(schedule) == steps_per_epoch("proportional", counts)
    assert schedule[:15].tolist() != [0] * 15  # not blocks of one dataset
    # the same on every worker (no rank in the seed), different per epoch
    assert np.array_equal(schedule, dataset_schedule("proportional", counts, seed=1, epoch=0))
    assert not np.array_equal(schedule, dataset_schedule("proportional", counts, seed=1, epoch=1))


def test_round_robin_schedule_stops_with_the_smallest_dataset():
    schedule = dataset_schedule("round_robin", [7, 3, 4], seed=0, epoch=0)
    assert schedule.tolist() == [0, 1, 2] * 3
    assert steps_per_epoch("round_robin", [7, 3, 4]) == 9


# ---------------------------------------------------------------------- optimizer and schedules
def test_no_weight_decay_on_bias_and_layernorm(tiny_model):
    decay = decay_parameter_names(tiny_model.hf_model)
    names = [n for n, _ in tiny_model.hf_model.named_parameters()]
    expected = {n for n in names if "bias" not in n and "LayerNorm" not in n}
    assert decay == expected
    optimizer = create_optimizer(tiny_model.hf_model, lr=1e-3, weight_decay=0.1)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    params = dict(tiny_model.hf_model.named_parameters())
    assert by_decay[0.1] == {id(params[n]) for n in expected}
    assert by_decay[0.0] == {id(params[n]) for n in names if n not in expected}


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
def test_learning_rate_schedules(kind):
    warmup, total = 4, 20

    def reference(step: int) -> float:
        if kind == "constant":
            return 1.0
        if step < warmup:
            return step / warmup
        if kind == "constant_with_warmup":
            return 1.0
        progress = (step - warmup) / (total - warmup)
        return 1.0 - progress if kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = create_scheduler(optimizer, kind, warmup, total)
    seen = []
    for _ in range(total + 1):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2.0 * reference(s) for s in range(total + 1)])
    assert lr_factor(kind, 10, warmup, total) == pytest.approx(reference(10))
