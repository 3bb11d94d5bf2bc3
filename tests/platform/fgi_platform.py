"""Helpers of the platform tests: client environments, CLI runs, Ray jobs (ports and shutdown: ``tests.servers``)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import BIN

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120
JOB_POLL_S = 5.0  # pause between two `ray job status` calls


@dataclass
class RayHead:
    """A running ``ray start --head --block``."""

    proc: subprocess.Popen
    gcs: str  # 127.0.0.1:<port>, for RAY_ADDRESS
    dashboard: str  # http://127.0.0.1:<port>, for `ray job submit --address`
    env: dict[str, str]  # client environment: token auth, PATH of this venv, FGI_HOME
    temp_dir: Path


@dataclass
class MlflowServer:
    proc: subprocess.Popen
    uri: str
    root: Path


def base_env(fgi_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "FGI_HOME": str(fgi_home),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a command to completion and fail the test with its output when it fails."""
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                    f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


def submit_job(head: RayHead, entrypoint: list[str]) -> str:
    """``ray job submit --no-wait`` of ``entrypoint`` with this repository as working directory; returns the job id."""
    out = run_cli([str(BIN / "ray"), "job", "submit", "--address", head.dashboard, "--no-wait",
                   "--working-dir", str(REPO), "--runtime-env", str(REPO / "cluster" / "runtime_env.yaml"), "--",
                   *entrypoint], head.env, 120)
    return next(line.split("'")[1] for line in (out.stdout + out.stderr).splitlines() if "submitted successfully" in line)


def wait_job(head: RayHead, job_id: str, timeout: float) -> str:
    """Wait for a Ray job to end and return its logs; fail the test (stopping the job) unless it succeeded."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        done = run_cli([str(BIN / "ray"), "job", "status", "--address", head.dashboard, job_id], head.env, 60)
        status = (done.stdout + done.stderr).lower()  # e.g. "Job 'raysubmit_...' succeeded", coloured
        if any(s in status for s in ("succeeded", "failed", "stopped")):
            break
        time.sleep(JOB_POLL_S)
    logs = run_cli([str(BIN / "ray"), "job", "logs", "--address", head.dashboard, job_id], head.env, 60).stdout
    if "succeeded" not in status:
        subprocess.run([str(BIN / "ray"), "job", "stop", "--address", head.dashboard, job_id], env=head.env,
                       capture_output=True, timeout=60)
        pytest.fail(f"job {job_id} did not succeed: {status}\n{logs[-8000:]}")
    return logs


def ray_workers(actor: str, session: int) -> list[int]:
    """PIDs of the Ray workers running ``actor`` in the session ``session``: Ray titles them
    ``ray::<class>.<method>``. The test's head starts a session of its own and its workers stay in it, so
    another Ray on the machine (a user's sweep) is never touched."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:  # the process ended while listing
            continue
        # the fields after the ")" that ends the command name: state, ppid, pgrp, session
        if title.startswith(f"ray::{actor}".encode()) and int(stat.rsplit(")", 1)[1].split()[3]) == session:
            pids.append(int(proc.name))
    return pids


def smoke_sweep(mlflow_server: MlflowServer, tmp_path: Path, name: str, *extra: str) -> list[str]:
    """``tune.py`` of a synthetic smoke sweep without early stopping, named ``name`` (sweep and experiment), with
    its storage and best config under ``tmp_path``."""
    return [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
            *extra, "--mlflow-uri", mlflow_server.uri, "--experiment", name, "--storage", str(tmp_path / "storage"),
            "--best-dir", str(tmp_path / "best"), "--name", name]
