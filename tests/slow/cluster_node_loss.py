"""A real multi-node Ray cluster on this machine (a head and two worker nodes on loopback, each with its own
resources): elastic training on 1..2 workers, one worker node killed mid-run, a node added back.

Run by tests/slow/test_faults_cluster.py in its own process (it must own ``ray.init``); prints one JSON
line with what happened. Usage: ``python cluster_node_loss.py <work dir> <model dir>``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from raycross import CrossEncoder
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

MAX_STEPS = 30
SLOT = {"CPU": 1, "trainer_slot": 1}


class StepLog(TrainerCallback):
    """Rank 0 appends ``<world size> <step>`` after every step. Steps are paced so that the test can act
    between them: slower while the run is down to one worker (the window for the node to come back)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_step_end(self, args, state, control, **kwargs):
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        time.sleep(0.3 if world == 2 else 1.0)
        if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return
        with open(self.path, "a") as f:
            f.write(f"{world} {state.global_step}\n")


def read_log(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition, timeout_s: float = 240.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def main(work: Path, model_dir: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    log, events = work / "steps.log", []
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1, resources={"trainer_slot": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})

    def chaos() -> None:
        # 1) both nodes train and checkpoint-4 exists: kill one worker node (no graceful shutdown)
        if not wait_for(lambda: any(w == 2 and s >= 5 for w, s in read_log(log))):
            events.append("never trained on 2 workers")
            return
        seen = len(read_log(log))
        killed_after = max(s for _, s in read_log(log))
        cluster.remove_node(nodes[1], allow_graceful=False)
        events.append(f"killed a node after step {killed_after}")
        # 2) the run goes on with 1 worker: give the capacity back
        if not wait_for(lambda: any(w == 1 for w, _ in read_log(log)[seen:])):
            events.append("never continued on 1 worker")
            return
        cluster.add_node(num_cpus=1, resources={"trainer_slot": 1})
        events.append("added a node")

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    model = CrossEncoder(str(model_dir), device="cpu")
    rows = {"q": [f"the dog {i % 7}" for i in range(256)], "d": [["dog play", "a cat", "water", "man run"][i % 4]
                                                                   for i in range(256)],
            "label": [float(i % 2) for i in range(256)]}
    args = CrossEncoderTrainingArguments(
        str(work / "out"), max_steps=MAX_STEPS, per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=5,
        save_strategy="steps", save_steps=2, save_total_limit=2, seed=5, disable_tqdm=True,
        num_workers=1, max_workers=2, elastic_resize_interval_s=1.0, resources_per_worker=SLOT, max_failures=4,
    )
    started = time.monotonic()
    result = CrossEncoderTrainer(model, args, train_dataset=rows, callbacks=[StepLog(str(log))]).train()
    thread.join(timeout=5)
    reloaded = CrossEncoder(str(work / "out"), device="cpu")
    scores = reloaded.predict([("the dog", "dog play"), ("the dog", "a cat")])
    ray.shutdown()
    cluster.shutdown()
    return {
        "global_step": result.global_step, "steps": read_log(log), "events": events,
        "scores": [float(s) for s in scores], "seconds": round(time.monotonic() - started, 1),
        "same_weights": all(torch.equal(a, b) for a, b in zip(model.hf_model.state_dict().values(),
                                                               reloaded.hf_model.state_dict().values())),
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))), flush=True)
