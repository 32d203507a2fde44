"""Node loss on a real multi-node Ray cluster started on this machine (tests/slow/cluster_node_loss.py: a
head and two worker nodes, each its own raylet with its own resources): elastic training on 1..2 workers
loses a node mid-run, continues on one worker from the last checkpoint, completes, and the final model
loads. A node is then added back: Ray Train V2's elastic policy grows the run back to two workers (its
autoscaling coordinator sees the node at its next 20 s tick; ``elastic_resize_interval_s`` paces the check),
which continue from the last checkpoint at the exact data position.

The scenario runs in its own process: it owns ``ray.init`` (this session's local Ray stays untouched).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("cluster_node_loss.py")


def test_a_two_node_run_survives_losing_a_node(tmp_path, tiny_model_path):
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "150"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tiny_model_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-6000:]
    result = json.loads(lines[-1][len("RESULT "):])

    assert result["events"][0].startswith("killed a node after step"), result
    steps = result["steps"]  # (world size, global step) of every step rank 0 finished, in order
    worlds = [w for w, _ in steps]
    first_one = worlds.index(1)
    assert set(worlds[:first_one]) == {2}  # trained on both nodes, lost one, continued on the other
    # the restart resumes right after the last checkpoint (save_steps=2), never from scratch
    resumed_at = steps[first_one][1]
    assert resumed_at > 1 and (resumed_at - 1) % 2 == 0, steps
    # the node came back: the run grew back to 2 workers, right after a checkpoint, and finished on them
    assert "added a node" in result["events"] and result["events"][-1].startswith("grew back"), result
    back = first_one + worlds[first_one:].index(2)
    assert set(worlds[first_one:back]) == {1} and set(worlds[back:]) == {2}, steps
    assert (steps[back][1] - 1) % 2 == 0 and steps[back][1] <= steps[back - 1][1] + 1, steps
    assert result["global_step"] == 30 and steps[-1][1] == 30
    # the final model loads (raycross) and is the trained one
    assert result["same_weights"] and all(math.isfinite(s) for s in result["scores"])
