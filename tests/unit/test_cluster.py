"""cluster/ and jobs/runtime_env.yaml: the YAML files parse, carry the required keys and agree with each other.

The launcher YAMLs are also checked against Ray's own cluster-config JSON schema (no cloud calls).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
# GPUs per instance type named in the launcher configs (AWS / GCP published specs).
AWS_GPUS = {"g5.xlarge": 1, "g5.2xlarge": 1, "g5.12xlarge": 4, "g5.48xlarge": 8, "p4d.24xlarge": 8}


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# ---------------------------------------------------------------------------------------- launcher
@pytest.fixture(params=["aws", "gcp"])
def launcher(request):
    return request.param, _load(CLUSTER / f"{request.param}.yaml")


def test_launcher_required_keys(launcher):
    provider, config = launcher
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands", "max_workers"):
        assert key in config, key
    assert config["provider"]["type"] == provider
    assert config["head_node_type"] in config["available_node_types"]
    workers = {n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]}
    gpu_types = {n: t for n, t in workers.items() if t.get("resources", {}).get("GPU", 0) >= 1}
    assert gpu_types, "a GPU worker node type is required"
    for name, node_type in gpu_types.items():
        assert node_type["min_workers"] == 0 <= node_type["max_workers"], name
        assert node_type["max_workers"] <= config["max_workers"], name
    assert any("raycross[gpu]" in c for c in config["setup_commands"])


def test_launcher_gpu_counts_match_the_hardware(launcher):
    provider, config = launcher
    for name, node_type in config["available_node_types"].items():
        gpus = node_type.get("resources", {}).get("GPU", 0)
        node = node_type["node_config"]
        if provider == "aws":
            assert AWS_GPUS.get(node["InstanceType"], 0) == gpus, name
        else:
            accelerators = node.get("guestAccelerators", [])
            assert sum(a["acceleratorCount"] for a in accelerators) == gpus, name
            for accel in accelerators:
                # the accelerator must be in the node's zone and project
                assert f"/zones/{config['provider']['availability_zone']}/" in accel["acceleratorType"]
                assert accel["acceleratorType"].startswith(f"projects/{config['provider']['project_id']}/")
            if gpus:
                assert node["scheduling"][0]["onHostMaintenance"] == "TERMINATE", name


def test_launcher_start_commands_share_storage_and_expose_dashboard(launcher):
    provider, config = launcher
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head" in head and "--dashboard-host=0.0.0.0" in head and "--port=6379" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    scheme = {"aws": "s3://", "gcp": "gs://"}[provider]
    storage = re.findall(r"RAYCROSS_STORAGE_PATH=(\S+)", head)
    assert storage and storage == re.findall(r"RAYCROSS_STORAGE_PATH=(\S+)", worker)
    assert storage[0].startswith(scheme)
    assert re.search(r"RAYCROSS_OUTPUT_ROOT=\S+", head)


def test_launcher_passes_rays_own_schema(launcher):
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    _, config = launcher
    validate_config(prepare_config(config))


# ----------------------------------------------------------------------------------------- KubeRay
def _pvc_name() -> str:
    (pvc,) = _docs(KUBERAY / "storage.yaml")
    assert pvc["apiVersion"] == "v1" and pvc["kind"] == "PersistentVolumeClaim"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert pvc["spec"]["resources"]["requests"]["storage"]
    return pvc["metadata"]["name"]


def _check_pod(template: dict, pvc: str, gpu: bool) -> None:
    spec = template["spec"]
    (container,) = [c for c in spec["containers"] if c["name"].startswith("ray-")]
    assert container["image"]
    limits = container["resources"]["limits"]
    if gpu:
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
    else:
        assert "nvidia.com/gpu" not in limits
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    shared = [name for name, v in volumes.items() if v.get("persistentVolumeClaim", {}).get("claimName") == pvc]
    assert len(shared) == 1 and shared[0] in mounts, "the shared PVC must be mounted"
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    mount = mounts[shared[0]]
    # checkpoints and outputs on the shared volume, so every node reaches them
    assert env["RAYCROSS_STORAGE_PATH"].startswith(mount + "/")
    assert env["RAYCROSS_OUTPUT_ROOT"].startswith(mount + "/")


def _check_cluster_spec(spec: dict, pvc: str) -> None:
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    _check_pod(head["template"], pvc, gpu=False)
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265} <= ports
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert "rayStartParams" in group
        _check_pod(group["template"], pvc, gpu=True)
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec["rayVersion"])


def test_raycluster_manifest():
    (doc,) = _docs(KUBERAY / "raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["metadata"]["name"]
    _check_cluster_spec(doc["spec"], _pvc_name())


def test_rayjob_manifest_runs_a_real_recipe():
    (doc,) = _docs(KUBERAY / "rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    _check_cluster_spec(spec["rayClusterSpec"], _pvc_name())
    assert spec["shutdownAfterJobFinishes"] is True
    yaml.safe_load(spec["runtimeEnvYAML"])

    # The entrypoint is a jobs/ script of the image's copy of this repo, with flags the CLI accepts.
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python"
    image_root = "/home/ray/raycross/"
    script = REPO / argv[1].removeprefix(image_root)
    assert script.is_file() and script.parent.name == "jobs"
    from raycross.cli import build_parser

    args = build_parser().parse_args([script.stem, *argv[2:]])
    assert (REPO / args.config.removeprefix(image_root)).is_file()
    assert args.use_gpu is True


def test_dockerfile_matches_manifests():
    text = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\d+\.\d+\.\d+)-py\d+-gpu$", text, re.M)
    assert base
    for name in ("raycluster.yaml", "rayjob.yaml"):
        (doc,) = _docs(KUBERAY / name)
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        assert spec["rayVersion"] == base.group(1)
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for item in source.split():
            assert (REPO / item).exists(), item
    assert 'pip install --no-cache-dir ".[gpu]"' in text


# ------------------------------------------------------------------------------- runtime env, docs
def test_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    data = _load(REPO / "jobs" / "runtime_env.yaml")
    env = RuntimeEnv(**data)
    assert env["working_dir"] == "."
    assert env["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"
    assert ".git" in data["excludes"]


def test_readme_mentions_only_files_that_exist():
    text = (CLUSTER / "README.md").read_text()
    paths = set(re.findall(r"(?<![\w/.~-])((?:cluster|jobs)/[\w./-]+\.(?:yaml|py|md)|cluster/Dockerfile)", text))
    assert len(paths) >= 10
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, missing


def test_readme_job_commands_parse():
    from raycross.cli import build_parser

    text = (CLUSTER / "README.md").read_text().replace("\\\n", " ")
    commands = re.findall(r"^ray job submit .*? -- +python (jobs/\w+\.py) (.*)$", text, re.M)
    assert len(commands) >= 6
    parser = build_parser()
    for script, rest in commands:
        args = parser.parse_args([Path(script).stem, *shlex.split(rest)])
        assert (REPO / args.config).is_file(), args.config
