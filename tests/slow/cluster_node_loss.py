"""A real multi-node Ray cluster on this machine (a head and two worker nodes on loopback, each with its own
resources): elastic training on 1..2 workers, one worker node killed mid-run, a node added back and the
run grown back to 2 workers by Ray Train's elastic policy.

Run by tests/slow/test_faults_cluster.py in its own process (it must own ``ray.init``); prints one JSON
line with what happened. Usage: ``python cluster_node_loss.py <work dir> <model dir>``.
"""

from __future__ import annotations

import json
import subprocess
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


GROW_WAIT_S = 90.0  # Ray notices a returned node at its autoscaling coordinator's next tick (every 20 s)


class StepLog(TrainerCallback):
    """Rank 0 appends ``<world size> <step>`` after every step. Steps are paced so that the test can act
    between them: slower while the run is down to one worker, and once the node is back (``added`` marker)
    the single worker waits up to GROW_WAIT_S for Ray to resize the group (it is stopped while it waits)."""

    def __init__(self, path: str, added: str) -> None:
        self.path = path
        self.added = added
        self.waiting = True

    def on_step_end(self, args, state, control, **kwargs):
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        time.sleep(0.3 if world == 2 else 1.0)
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            with open(self.path, "a") as f:
                f.write(f"{world} {state.global_step}\n")
        if world == 1 and self.waiting:
            self._wait_for_growth()

    def _wait_for_growth(self) -> None:
        """On one worker: wait for the node to come back (starting a raylet takes long on a loaded machine),
        then up to GROW_WAIT_S for Ray to resize the group, which stops this process while it waits."""
        marker, deadline = Path(self.added), time.monotonic() + 300
        while time.monotonic() < deadline:
            if marker.exists() and time.time() - marker.stat().st_mtime >= GROW_WAIT_S:
                break
            time.sleep(0.5)
        self.waiting = False  # did not grow back in time: finish on one worker (the test reports it)


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

    log, added, events, returned = work / "steps.log", work / "node_added", [], []
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
        # (Ray's first restart asks for the old size until its coordinator's next tick, then waits
        # RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S for that placement group before trying fewer workers)
        if not wait_for(lambda: any(w == 1 for w, _ in read_log(log)[seen:]), timeout_s=480):
            events.append("never continued on 1 worker")
            return
        # a fresh node joins (`ray start --block` in its own process: Cluster.add_node needs the main thread)
        returned.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--block", f"--address={cluster.address}",
             "--num-cpus=1", '--resources={"trainer_slot": 1}'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 3, timeout_s=120)
        added.write_text("added")
        events.append("added a node")
        # 3) Ray's elastic policy restarts the group on 2 workers from the last checkpoint
        back = len(read_log(log))
        waited = time.monotonic()
        if wait_for(lambda: any(w == 2 for w, _ in read_log(log)[back:]), timeout_s=GROW_WAIT_S + 60):
            events.append(f"grew back to 2 workers {time.monotonic() - waited:.0f} s after the node returned")

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
    result = CrossEncoderTrainer(model, args, train_dataset=rows, callbacks=[StepLog(str(log), str(added))]).train()
    thread.join(timeout=5)
    reloaded = CrossEncoder(str(work / "out"), device="cpu")
    scores = reloaded.predict([("the dog", "dog play"), ("the dog", "a cat")])
    ray.shutdown()
    for process in returned:  # the returned node's `ray start --block` stops its own processes
        process.terminate()
        process.wait(timeout=60)
    cluster.shutdown()
    return {
        "global_step": result.global_step, "steps": read_log(log), "events": events,
        "scores": [float(s) for s in scores], "seconds": round(time.monotonic() - started, 1),
        "same_weights": all(torch.equal(a, b) for a, b in zip(model.hf_model.state_dict().values(),
                                                               reloaded.hf_model.state_dict().values())),
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))), flush=True)
