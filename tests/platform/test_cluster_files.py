"""Every file in cluster/ parses, and the entry points, options and paths it names exist."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"


def _parser(command: str) -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog=f"fgi {command}", exit_on_error=False)
    importlib.import_module(f"fgi.commands.{command}").add_arguments(parser)
    return parser


def _check_entrypoint(text: str, where: str) -> None:
    """`python tune.py ...` / `python train.py ...`: the script exists and its options parse."""
    words = shlex.split(" ".join(text.split()))
    assert words[0] == "python", where
    script = words[1]
    assert (REPO / script).is_file(), f"{where}: {script} does not exist"
    command = {"tune.py": "tune", "train.py": "train"}[script]
    try:
        _parser(command).parse_args(words[2:])
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"{where}: {' '.join(words)} does not parse: {exc}")


@pytest.mark.slow  # runs bash -n in a subprocess
def test_every_cluster_file_is_known_and_parses():
    files = sorted(p.name for p in CLUSTER.iterdir() if p.is_file())
    assert files == ["README.md", "autoscaler.yaml", "mlflow_server.sh", "raycluster.yaml", "rayjob.yaml", "runtime_env.yaml"]
    for p in CLUSTER.glob("*.yaml"):
        docs = list(yaml.safe_load_all(p.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), p
    subprocess.run(["bash", "-n", str(CLUSTER / "mlflow_server.sh")], check=True)


def test_autoscaler_installs_the_project_and_starts_with_token_auth():
    cfg = yaml.safe_load((CLUSTER / "autoscaler.yaml").read_text())
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types and any("gpu" in name for name in types)
    assert any("pip install -e /home/ubuntu/fgi" in c for c in cfg["setup_commands"])
    assert cfg["file_mounts"] == {"/home/ubuntu/fgi": "."}
    assert (REPO / "pyproject.toml").is_file()
    for c in cfg["head_start_ray_commands"][1:] + cfg["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token" in c
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])


def test_kuberay_manifests():
    cluster = yaml.safe_load((CLUSTER / "raycluster.yaml").read_text())
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert cluster["kind"] == "RayCluster" and job["kind"] == "RayJob"
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == "2.60.0"
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP", "never expose the job API"
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token" and "RAY_AUTH_TOKEN" in env
        assert any("nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
                   for g in spec["workerGroupSpecs"])
    _check_entrypoint(job["spec"]["entrypoint"], "rayjob.yaml entrypoint")
    runtime = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert ".venv/" in runtime["excludes"] and "mlruns/" in runtime["excludes"]


def test_runtime_env_excludes_environments_results_caches_and_data():
    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert set(env) <= {"excludes", "env_vars", "pip", "working_dir"}
    for needed in (".venv/", ".git/", "mlruns/", "mlflow.db", ".fgi-cache/", "data/"):
        assert needed in env["excludes"], needed


def test_mlflow_launcher_uses_a_database_and_an_artifact_store():
    text = (CLUSTER / "mlflow_server.sh").read_text()
    assert "--backend-store-uri" in text and "--artifacts-destination" in text
    assert 'HOST="${MLFLOW_HOST:-127.0.0.1}"' in text


def test_readme_commands_and_paths_exist():
    text = (CLUSTER / "README.md").read_text()
    for name in re.findall(r"cluster/[\w.]+", text):
        assert (REPO / name).is_file(), f"README names {name}"
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            m = re.search(r"-- +(python (?:tune|train)\.py .*)$", line)
            if m:
                _check_entrypoint(m.group(1), "README.md")
    for topic in ("port-forward", "token", "--resume", "8265"):
        assert topic in text
