"""Resume on another number of workers than the checkpoint was written with (issue #17, item 10).

The training loop runs in plain gloo process groups (torch.multiprocessing, no Ray): 2 workers train to a
mid-epoch checkpoint, then the run resumes on 1 and on 3 workers. Every batch a worker builds is recorded
(dataset, row ids, weight): across the interrupted and the resumed parts every row of the epoch is trained
exactly once (weight 1), as in an uninterrupted 2-worker run; padding batches (weight 0) only fill the last
step of a dataset when fewer batches than workers are left. Covered: the plain sampler, NO_DUPLICATES,
GROUP_BY_LABEL, and two datasets (proportional and round robin).
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raycross.training.runtime import LocalRuntime, ProcessGroupCollectives

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = 30  # 15 batches of 2: 8 steps on 2 workers (one padding batch); the rest after 2 steps: 11 on 1, 4 on 3
SCENARIOS = {
    "plain": dict(batch_sampler="batch_sampler"),
    "no_duplicates": dict(batch_sampler="no_duplicates"),
    "group_by_label": dict(batch_sampler="group_by_label", per_device_train_batch_size=4),
    "proportional": dict(multi_dataset_batch_sampler="proportional", datasets=2),
    "round_robin": dict(multi_dataset_batch_sampler="round_robin", datasets=2),
    "streamed": dict(streaming=True, streaming_window=8),  # per-worker shards: the guarantee is a bound
}
EXACT = [name for name in SCENARIOS if name != "streamed"]


class GlooRuntime(ProcessGroupCollectives, LocalRuntime):
    """The loop's runtime in a gloo process group: whole tables in every process, checkpoints in one shared
    run directory (rank 0 publishes them)."""

    def __init__(self, tables: dict, run_dir: Path) -> None:
        LocalRuntime.__init__(self, tables, {}, run_dir)
        self.world_size, self.rank = dist.get_world_size(), dist.get_rank()

    def train_blocks(self, name: str, columns: list[str], num_rows: int, block_rows: int, seed: int):
        """A streamed dataset split as Ray Data splits it: ``num_rows // W`` contiguous rows per worker."""
        from raycross.data.blocks import TableBlocks

        rows = num_rows // self.world_size
        return TableBlocks(self.train_tables[name].slice(self.rank * rows, rows), block_rows, seed, columns)

    def prepare_model(self, model, **kwargs) -> None:
        model.to(self.device)
        if self.world_size > 1:
            model.wrap_for_training("ddp")

    @contextmanager
    def checkpoint(self, name: str, metrics: dict):
        staging = self.run_dir / f".staging-{name}"
        if self.rank == 0:
            staging.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        yield staging
        dist.barrier()
        if self.rank == 0:
            staging.rename(self.run_dir / name)
        dist.barrier()
        self.last_checkpoint = str(self.run_dir / name)


def _tables(scenario: dict) -> dict:
    from raycross.data import to_arrow

    tables = {}
    for d in range(scenario.get("datasets", 1)):
        rows = ROWS if d == 0 else ROWS - 6  # two datasets of different sizes
        tables[f"d{d}"] = to_arrow({"q": [f"q {d} {i}" for i in range(rows)],
                                    "p": [f"p {i % 5}" for i in range(rows)],  # shared texts: no_duplicates defers
                                    "label": [float(i % 2) for i in range(rows)]})
    return tables


def _run(tmp: Path, model_path: str, name: str, out: Path, record: list, **arguments) -> int:
    """Train scenario `name` in this process group; records (dataset, [row ids], weight) per batch."""
    import raycross.training.loop as loop_module
    from raycross import CrossEncoder
    from raycross.data import DatasetSpec
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.training import CrossEncoderTrainingArguments
    from raycross.training.batches import Batch

    scenario = dict(SCENARIOS[name])
    scenario.pop("datasets", None)
    streamed = {n: t.num_rows for n, t in _tables(SCENARIOS[name]).items()} if scenario.get("streaming") else {}
    tables = _tables(SCENARIOS[name])

    class Recorded(Batch):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            record.append((self.dataset, [int(q.split()[2]) for q in self.inputs[0]], self.weight))

    loop_module.Batch = Recorded
    model = CrossEncoder(model_path, device="cpu")
    args = CrossEncoderTrainingArguments(
        str(out), **{"per_device_train_batch_size": 2, "learning_rate": 1e-4, "seed": 5, "disable_tqdm": True,
                     "save_strategy": "no", "logging_steps": 1, **scenario, **arguments})
    loss = BinaryCrossEntropyLoss(model)
    job = loop_module.TrainJob(model=model, args=args, losses={n: loss for n in tables}, show_progress=False,
                               train_specs={n: DatasetSpec.from_table(n, t) for n, t in tables.items()},
                               streamed=streamed)
    output = loop_module.run_training(job, GlooRuntime(tables, out))
    return output.state.global_step


def _worker(rank: int, world: int, init_file: str, model_path: str, tmp: str, phase: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tmp_path, result = Path(tmp), {}
        for name in SCENARIOS:
            if phase == "first":
                whole: list = []
                _run(tmp_path, model_path, name, tmp_path / f"{name}-whole", whole, num_train_epochs=1)
                part: list = []
                _run(tmp_path, model_path, name, tmp_path / f"{name}-2", part, max_steps=2, save_strategy="steps",
                     save_steps=2)
                result[name] = {"whole": whole, "first": part}
            else:
                out = tmp_path / f"{name}-on-{world}"
                rest: list = []
                steps = _run(tmp_path, model_path, name, out, rest, num_train_epochs=1)
                result[name] = {"rest": rest, "global_step": steps}
        (tmp_path / f"{phase}-{world}-rank{rank}.json").write_text(json.dumps(result))
        dist.barrier()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # no destroy_process_group(): gloo's teardown can hang in one rank once the other has exited


def _spawn(tmp: Path, world: int, model_path: Path, phase: str) -> dict:
    init_file = tmp / f"pg-{phase}-{world}"
    mp.spawn(_worker, args=(world, str(init_file), str(model_path), str(tmp), phase), nprocs=world, join=True)
    return [json.loads((tmp / f"{phase}-{world}-rank{r}.json").read_text()) for r in range(world)]


def _trained(records: list[list]) -> Counter:
    """(dataset, row) -> times trained with weight 1, over all workers' records."""
    return Counter((d, row) for worker in records for d, rows, weight in worker if weight for row in rows)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tiny_model_path):
    tmp = tmp_path_factory.mktemp("resize")
    first = _spawn(tmp, 2, tiny_model_path, "first")
    results = {}
    for world in (1, 3):
        for name in SCENARIOS:
            shutil.copytree(tmp / f"{name}-2", tmp / f"{name}-on-{world}")
        results[world] = _spawn(tmp, world, tiny_model_path, "rest")
    return first, results


@pytest.mark.parametrize("world", [1, 3])
@pytest.mark.parametrize("name", EXACT)
def test_every_row_of_the_epoch_is_trained_once_across_a_change_of_worker_count(resumed, name, world):
    first, results = resumed
    whole = _trained([r[name]["whole"] for r in first])
    assert max(whole.values()) == 1  # the uninterrupted 2-worker epoch: no row twice
    if name == "plain":
        assert set(whole) == {("d0", i) for i in range(ROWS)}  # ... and every row
    interrupted = _trained([r[name]["first"] for r in first])
    assert sum(len(rows) for r in first for _, rows, w in r[name]["first"] if w) == sum(interrupted.values())
    rest = _trained([r[name]["rest"] for r in results[world]])
    assert interrupted + rest == whole  # every row of the epoch exactly once, none skipped, none repeated
    steps = {r[name]["global_step"] for r in results[world]}
    assert len(steps) == 1  # equal step counts on every worker
    batches = [len(r[name]["rest"]) for r in results[world]]
    assert len(set(batches)) == 1
    assert steps.pop() == 2 + batches[0]  # the run ends with the epoch: max_steps follows the new worker count
    if name == "plain":  # 15 batches: 4 trained on 2 workers, 11 left: 11 steps on 1 worker, 4 on 3 (one padding)
        assert batches[0] == {1: 11, 3: 4}[world]
        padding = sum(1 for r in results[world] for _, _, w in r[name]["rest"] if not w)
        assert padding == {1: 0, 3: 1}[world]


@pytest.mark.parametrize("world", [1, 3])
def test_a_streamed_epoch_continues_at_the_same_share_with_a_bounded_overlap(resumed, world):
    # the README's statement: the batch count is exact; rows trained twice = rows skipped <= min(f, 1 - f) of
    # the epoch's rows (f: the share done), up to one batch per worker of rounding
    first, results = resumed
    whole = _trained([r["streamed"]["whole"] for r in first])
    interrupted = _trained([r["streamed"]["first"] for r in first])
    rest = _trained([r["streamed"]["rest"] for r in results[world]])
    epoch = sum(whole.values())  # rows of the uninterrupted 2-worker epoch: 2 shards of 15 rows
    assert epoch == ROWS and max(whole.values()) == 1
    trained = interrupted + rest
    f = sum(interrupted.values()) / epoch  # 2 steps x 2 workers x 2 rows of 30
    twice = sum(1 for c in trained.values() if c > 1)
    skipped = sum(1 for key in whole if key not in trained)
    assert twice - skipped == sum(trained.values()) - epoch  # the row count is exact up to the rounding
    assert abs(sum(trained.values()) - epoch) <= 2 * max(world, 2)
    assert max(twice, skipped) <= min(f, 1 - f) * epoch + 2 * max(world, 2)
    steps = {r["streamed"]["global_step"] for r in results[world]}
    assert len(steps) == 1
