"""evaluate_sharded over a real torch.distributed (gloo) group of 2 processes with a DDP-wrapped model.

The shards have different numbers of batches; scoring through the DDP wrapper would broadcast buffers
on every forward and hang, so this also checks that evaluation scores with the unwrapped model.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import traceback

import pytest

SAMPLES = [
    {"query": f"word {i}: the man is playing with a dog", "positive": [f"a person who plays {i}"],
     "documents": [f"an animal {i}", f"a person who plays {i}", "the state of being young",
                   "a small house"][: 2 + i % 3]}
    for i in range(9)
]


def _worker(rank: int, world_size: int, init_file: str, model_path: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from raycross import CrossEncoder
    from raycross.evaluation import CrossEncoderRerankingEvaluator, evaluate_sharded

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        model = CrossEncoder(model_path, device="cpu")
        model.wrap_for_training("ddp")
        # batch_size=3: rank 0 scores 2 more batches than rank 1.
        evaluator = CrossEncoderRerankingEvaluator(SAMPLES, name="dev", batch_size=3)
        metrics = evaluate_sharded(evaluator, model, output_path=os.path.join(out_dir, f"rank{rank}"), epoch=0, steps=1)
        assert model.parallel_kind == "ddp" and not model._parallel_bypass  # the wrapper is back in use
        assert type(model._parallel.module).__name__ == "DistributedDataParallel"
        with open(os.path.join(out_dir, f"metrics{rank}.json"), "w") as handle:
            json.dump({"metrics": metrics, "primary": evaluator.primary_metric}, handle)
        dist.barrier()  # both ranks are done before either goes
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    # no destroy_process_group(): gloo's teardown can hang in one rank once the other has exited
    # (seen in CI after both ranks had written their metrics)
    os._exit(0)


def test_evaluate_sharded_with_gloo_and_ddp(tiny_model_path, tmp_path):
    from raycross import CrossEncoder
    from raycross.evaluation import CrossEncoderRerankingEvaluator

    context = mp.get_context("spawn")
    init_file = str(tmp_path / "init")
    processes = [
        context.Process(target=_worker, args=(rank, 2, init_file, str(tiny_model_path), str(tmp_path)))
        for rank in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.kill()
    assert not alive, "sharded evaluation hung"
    assert [p.exitcode for p in processes] == [0, 0]

    single = CrossEncoderRerankingEvaluator(SAMPLES, name="dev", batch_size=3, write_csv=False)(
        CrossEncoder(str(tiny_model_path), device="cpu")
    )
    for rank in range(2):
        result = json.loads((tmp_path / f"metrics{rank}.json").read_text())
        assert result["primary"] == "dev_ndcg@10"
        assert result["metrics"] == pytest.approx(single, abs=1e-6)
    assert (tmp_path / "rank0" / "CrossEncoderRerankingEvaluator_dev_results_@10.csv").is_file()
    assert not (tmp_path / "rank1").exists()
