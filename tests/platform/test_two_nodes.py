"""A DDP trial over two raylets on one machine survives the loss of the second node's training worker.

The test starts its own two-node cluster (a head and a second raylet, 1 CPU each, loopback, token auth), so
the trial's two 1-CPU workers must sit on different nodes. Once the trial has checkpointed, the worker on the
second node is killed (SIGKILL): Ray Train restarts the worker group from the latest checkpoint, on both
nodes again, and the trial ends FINISHED with one continuous metric history.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from fgi_platform import BIN, REPO, base_env, ray_workers

from tests.servers import free_port, stop_group

pytestmark = pytest.mark.slow

TIMEOUT_S = 600
MAX_STEPS = 12
EVERY = 4  # the smoke budget's evaluation interval


def _node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    ports = {name: free_port() for name in ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
                                            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                            "--runtime-env-agent-port")}
    cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
           "--num-gpus", "0", "--disable-usage-stats", *args]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True, cwd=REPO)


def _wait_nodes(env: dict[str, str], gcs: str, n: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.time() + 180
    script = f"import ray; ray.init(address={gcs!r}); print(sum(1 for x in ray.nodes() if x['Alive']))"
    while True:
        assert all(p.poll() is None for p in procs), "a raylet exited"
        out = subprocess.run([str(BIN / "python"), "-c", script], env=env, capture_output=True, text=True, timeout=120)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        assert time.time() < deadline, f"{n} nodes never came up: {out.stdout[-500:]} {out.stderr[-1500:]}"
        time.sleep(2)


def test_a_ddp_trial_survives_losing_the_second_nodes_worker(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    temp_dir = Path(tempfile.mkdtemp(prefix="fgi-2n-", dir="/tmp"))  # Ray's sockets need a short path
    env = base_env(tmp_path / "home")
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    gcs = f"127.0.0.1:{free_port()}"
    head = _node(["--head", "--port", gcs.split(":")[1], "--include-dashboard", "false", "--temp-dir", str(temp_dir),
                  "--ray-client-server-port", str(free_port())], env, tmp_path / "head.log")
    second = None
    driver = None
    try:
        time.sleep(5)
        second = _node(["--address", gcs], env, tmp_path / "second.log")
        _wait_nodes(env, gcs, 2, [head, second])
        cmd = [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
               "--num-samples", "1", "--max-steps", str(MAX_STEPS), "--workers-per-trial", "2",
               "--cpus-per-worker", "1", "--mlflow-uri", mlflow_server.uri, "--experiment", "two-nodes",
               "--storage", str(tmp_path / "storage"), "--best-dir", str(tmp_path / "best"), "--name", "two-nodes",
               "--verbose"]
        log_path = tmp_path / "driver.log"
        driver = subprocess.Popen(cmd, env=dict(env, RAY_ADDRESS=gcs), cwd=REPO, stdout=open(log_path, "w"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + TIMEOUT_S
        while not re.search(r"checkpoint_path\s+[^\s│]", log_path.read_text()):
            assert driver.poll() is None, log_path.read_text()[-5000:]
            assert time.time() < deadline, "the trial never checkpointed"
            time.sleep(0.1)
        on_second = ray_workers("RayTrainWorker", second.pid)
        assert len(on_second) == 1 and len(ray_workers("RayTrainWorker", head.pid)) == 1, "one worker per node"
        os.kill(on_second[0], signal.SIGKILL)
        assert driver.wait(TIMEOUT_S) == 0, log_path.read_text()[-5000:]
        log = log_path.read_text()
    finally:
        for proc in (driver, second, head):
            if proc is not None and proc.poll() is None:
                stop_group(proc)
    assert "[FailurePolicy] RETRY" in log, "Ray Train restarted the worker group"
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("two-nodes")
    run = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial")
    assert run.info.status == "FINISHED" and run.data.tags["fgi.outcome"] == "finished"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_dice")]
    assert steps == list(range(EVERY, MAX_STEPS + 1, EVERY)), f"one continuous history, got {steps}"
