"""`ray job submit` against a real local Ray cluster: the jobs/ recipes train and mine, bad configs fail fast.

One cluster for the module: `ray start --head --block` on 127.0.0.1 with free ports and a private temp
dir, stopped at the end by signalling that process (never `ray stop`, which would kill every Ray
instance on the machine, including the test session's own). Jobs upload the repository as their
working dir, with jobs/runtime_env.yaml, exactly as cluster/README.md tells users to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import make_tiny_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The Ray CLI and the job's Python of this environment (CI runs in a virtual environment).
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"
PYTHON = sys.executable
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class LocalRayCluster:
    """A one-node Ray cluster in a child process, with a dashboard for the job API."""

    def __init__(self, num_cpus: int = 4) -> None:
        self.num_cpus = num_cpus
        # Short path: Ray's unix sockets live under it and must stay below 108 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="rcjob-", dir="/tmp")
        ports = _free_ports(9)
        self.dashboard_port = ports[1]
        self.metrics_url = f"http://127.0.0.1:{ports[5]}/metrics"
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.command = [
            RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={ports[0]}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={ports[1]}",
            f"--ray-client-server-port={ports[2]}", f"--dashboard-agent-listen-port={ports[3]}",
            f"--dashboard-agent-grpc-port={ports[4]}", f"--metrics-export-port={ports[5]}",
            f"--node-manager-port={ports[6]}", f"--object-manager-port={ports[7]}",
            f"--runtime-env-agent-port={ports[8]}", f"--num-cpus={num_cpus}", "--num-gpus=0",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
        ]
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
            "RAY_ADDRESS": self.address,
            "RAY_metrics_report_interval_ms": "1000",  # export metrics every second, not every 10
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> LocalRayCluster:
        self._log = open(Path(self.temp_dir) / "ray-start.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited:\n{(Path(self.temp_dir) / 'ray-start.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the Ray dashboard at {self.address} did not come up in {timeout} s")

    def stop(self) -> None:
        """SIGTERM the `ray start --block` process (it shuts its Ray processes down), then reap leftovers."""
        import psutil

        if self.process is None:
            return
        try:
            spawned = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            spawned = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)  # a graceful shutdown is not needed for a throwaway cluster
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Processes this cluster spawned (by pid) or that run in its temp dir are ours: kill what is left.
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(self.temp_dir in arg for arg in proc.info["cmdline"] or []) or self.temp_dir in proc.cwd():
                    spawned.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        for proc in spawned:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(spawned, timeout=10)
        self._log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def metric_lines(self, name: str) -> list[str]:
        """Prometheus sample lines of metric `name` exported by this node (what the dashboard charts)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return []
        return [line for line in text.splitlines() if line.startswith(name + "{")]

    def submit(self, entrypoint: list[str], timeout: float = 150, watch_metric: str | None = None
               ) -> tuple[str, str, float]:
        """`ray job submit` the entrypoint from the repo root; wait; return (status, logs, seconds).

        With `watch_metric`, the metric's exported lines seen while the job runs are kept in `self.seen`.
        """
        from ray.job_submission import JobSubmissionClient

        submission_id = f"raycross-test-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        subprocess.run(
            [RAY, "job", "submit", "--address", self.address, "--working-dir", str(REPO),
             "--runtime-env", str(REPO / "jobs" / "runtime_env.yaml"), "--submission-id", submission_id,
             "--no-wait", "--", *entrypoint],
            check=True, env=self.env, cwd=REPO, timeout=120, capture_output=True,
        )
        client = JobSubmissionClient(self.address)
        status = None
        self.seen: set[str] = set()
        while time.monotonic() - started < timeout:
            status = str(client.get_job_status(submission_id).value)
            if watch_metric:
                self.seen.update(self.metric_lines(watch_metric))
            if status in TERMINAL:
                break
            time.sleep(1)
        if watch_metric:
            self.seen.update(self.metric_lines(watch_metric))
        logs = client.get_job_logs(submission_id)
        if status not in TERMINAL:
            client.stop_job(submission_id)
            pytest.fail(f"job {entrypoint} still {status} after {timeout} s; logs:\n{logs[-5000:]}")
        return status, logs, time.monotonic() - started


@pytest.fixture(scope="module")
def cluster():
    for attempt in range(2):  # a free port can be taken between picking it and Ray binding it
        local = LocalRayCluster(num_cpus=4)
        try:
            local.start()
            break
        except (RuntimeError, TimeoutError):
            local.stop()
            if attempt == 1:
                raise
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("job-models")
    return {
        "reranker": make_tiny_model(root / "reranker", num_labels=1, seed=1),
        "encoder": make_tiny_model(root / "encoder", encoder_only=True, seed=2),
    }


def _summary(logs: str) -> dict:
    """The JSON summary the CLI prints last."""
    start = logs.rindex('{\n  "command"')
    return json.loads(logs[start: logs.index("\n}", start) + 2])


def _transformers_scores(model_dir: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return np.array([torch.sigmoid(model(**tokenizer(a, b, return_tensors="pt")).logits[0, 0]).item()
                         for a, b in pairs])


def _mean_pooled(model_dir: Path, texts: list[str]) -> np.ndarray:
    """L2-normalized mean-pooled embeddings straight from transformers (independent of raycross.Embedder)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            features = tokenizer(text, return_tensors="pt", truncation=True)
            hidden = model(**features).last_hidden_state[0]
            vector = hidden.mean(dim=0)
            out.append((vector / vector.norm()).numpy())
    return np.stack(out)


# ----------------------------------------------------------------------------------------- tests
def test_bad_config_fails_fast_and_the_cluster_stays_healthy(cluster):
    status, logs, seconds = cluster.submit(
        [PYTHON, "jobs/train.py", "--config", "jobs/configs/reranker_bce.yaml",
         "--set", "training.learning_rat=1e-5"], timeout=90)
    assert status == "FAILED"
    assert "config key 'training.learning_rat': unknown key; did you mean 'learning_rate' or 'learning_rate_mapping'?" in logs
    assert "Traceback" not in logs  # a clean message, not a crash
    # it stopped before any work: no output locations announced, no data loaded, no Ray connection
    assert "output_dir:" not in logs and "mining hard negatives" not in logs
    assert "connected to the Ray cluster" not in logs
    assert seconds < 60

    # The next job runs on a healthy cluster with every CPU free again.
    probe = ("import json, ray; ray.init(); import time; time.sleep(1); "
             "print('RESOURCES', json.dumps(ray.available_resources()))")
    status, logs, _ = cluster.submit([PYTHON, "-c", probe], timeout=90)
    assert status == "SUCCEEDED", logs[-3000:]
    resources = json.loads(logs.split("RESOURCES ", 1)[1].splitlines()[0])
    assert resources["CPU"] == cluster.num_cpus


def test_train_job_runs_the_reranker_recipe(cluster, models, tmp_path):
    output_dir = tmp_path / "reranker-bce"
    status, logs, _ = cluster.submit([
        PYTHON, "jobs/train.py", "--config", "jobs/configs/reranker_bce.yaml",
        "--model", str(models["reranker"]), "--output-dir", str(output_dir),
        "--num-workers", "1", "--max-steps", "3", "--batch-size", "8", "--learning-rate", "1e-3",
        "--set", f"mining.model={models['encoder']}", "--set", "mining.num_negatives=3",
        "--set", "mining.execution=local",  # Ray Data mining is tested in tests/ray/test_mining_ray.py
        "--set", "loss.kwargs.pos_weight=3",
        "--set", "data.train.offline.limit=40", "--set", "data.corpus.offline.limit=300",
        "--set", "evaluator.data.limit=12", "--set", "training.resources_per_worker={CPU: 1}",
        "--set", "training.warmup_ratio=0", "--set", "training.logging_steps=1",
        "--set", "training.load_best_model_at_end=false", "--set", "model.max_length=128",
    ], timeout=200, watch_metric="ray_raycross_train_metric")
    assert status == "SUCCEEDED", logs[-6000:]
    # The training logs reached the Ray metrics the dashboard charts (exported while the job ran).
    ours = [line for line in cluster.seen if 'run="reranker-bce"' in line]
    assert any('metric="loss"' in line for line in ours), sorted(cluster.seen)[:5]
    assert any('metric="eval_wordnet-dev_ndcg@10"' in line for line in ours)
    summary = _summary(logs)
    assert summary["final_model"] == str(output_dir) == summary["output_dir"]
    assert summary["global_step"] == 3
    assert f"final_model: {output_dir}" in logs  # announced before training starts
    assert f"checkpoints: {output_dir}/checkpoint-<step>" in logs
    for key in ("eval_wordnet-dev_map", "eval_wordnet-dev_mrr@10", "eval_wordnet-dev_ndcg@10"):
        assert np.isfinite(summary["metrics"][key]), key
    assert summary["last_checkpoint"].endswith("checkpoint-3")

    # The trained model loads and scores like plain transformers does, and training changed it.
    from raycross import CrossEncoder

    model = CrossEncoder(str(output_dir), device="cpu")
    rows = pq.read_table(REPO / "raycross/resources/wordnet-mini/eval.parquet").slice(0, 3).to_pylist()
    pairs = [(r["query"], d) for r in rows for d in r["documents"]]
    scores = model.predict(pairs)
    np.testing.assert_allclose(scores, _transformers_scores(output_dir, pairs), atol=1e-5)
    assert not np.allclose(scores, _transformers_scores(models["reranker"], pairs), atol=1e-4)
    saved = (output_dir / "raycross_config.yaml").read_text()
    assert str(models["encoder"]) in saved and "max_steps: 3" in saved
    assert (output_dir / "trainer_state.json").is_file() and list(output_dir.glob("runs/*/events.out.tfevents*"))


def test_mine_job_writes_the_top_negatives(cluster, models, tmp_path):
    out = tmp_path / "mined"
    n_queries, n_corpus, k = 30, 200, 4
    status, logs, _ = cluster.submit([
        PYTHON, "jobs/mine.py", "--config", "jobs/configs/mine_hard_negatives.yaml",
        "--model", str(models["encoder"]), "--output", str(out), "--num-negatives", str(k),
        "--set", f"data.train.offline.limit={n_queries}", "--set", f"data.corpus.offline.limit={n_corpus}",
        "--set", "mining.relative_margin=null", "--set", "mining.batch_size=64",
        # In-process mining inside the job: Ray Data mining is tested in tests/ray/test_mining_ray.py and
        # its actor start-up would dominate this job on a 2-core machine.
        "--set", "mining.execution=local",
    ], timeout=150)
    assert status == "SUCCEEDED", logs[-6000:]
    summary = _summary(logs)
    assert summary["output_path"] == str(out) and summary["rows"] == n_queries

    mined = pq.read_table(out).to_pylist()
    train = pq.read_table(REPO / "raycross/resources/wordnet-mini/train.parquet").slice(0, n_queries).to_pylist()
    corpus = pq.read_table(REPO / "raycross/resources/wordnet-mini/corpus.parquet").slice(0, n_corpus).column("text")
    candidates = list(dict.fromkeys([*corpus.to_pylist(), *(r["positive"] for r in train)]))
    assert sorted(r["query"] for r in mined) == sorted(r["query"] for r in train)

    # Independent reference: cosine similarities of mean-pooled tiny-encoder embeddings; with
    # sampling_strategy=top the negatives are the k most similar candidates that are not the positive.
    by_query = {r["query"]: r for r in mined}
    queries = [r["query"] for r in train]
    q_emb, c_emb = _mean_pooled(models["encoder"], queries), _mean_pooled(models["encoder"], candidates)
    for i, row in enumerate(train):
        got = [by_query[row["query"]][f"negative_{j}"] for j in range(1, k + 1)]
        assert by_query[row["query"]]["positive"] == row["positive"]
        assert row["positive"] not in got and len(set(got)) == k
        sims = dict(zip(candidates, c_emb @ q_emb[i]))
        others = sorted((s for text, s in sims.items() if text not in got and text != row["positive"]), reverse=True)
        assert min(sims[t] for t in got) >= others[0] - 1e-4
