"""Fixtures of the platform tests: a real Ray head and a real MLflow server on 127.0.0.1.

Both bind free ports chosen at run time, run in their own process group, and are stopped by PID (the
whole group) when the session ends. The Ray head uses token authentication with a token that only
this session knows (``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``); every client the tests start gets
the same two variables through ``env``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fgi_platform import BIN, REPO, STARTUP_TIMEOUT_S, MlflowServer, RayHead, base_env

from tests.servers import MLFLOW_STOP_GRACE_S, free_port, launch_mlflow, stop_group


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """``ray start --head`` on 127.0.0.1 with 2 CPUs, free ports and token authentication."""
    # a short temp dir: Ray's unix sockets live under it and have a ~100 character path limit
    temp_dir = Path(tempfile.mkdtemp(prefix="fgi-ray-", dir="/tmp"))
    env = base_env(tmp_path_factory.mktemp("fgi_home"))
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    gcs_port, dash_port = free_port(), free_port()
    ports = {name: free_port() for name in (
        "--ray-client-server-port", "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")}
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
           "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(dash_port), "--temp-dir", str(temp_dir), "--disable-usage-stats"]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    log = open(temp_dir / "ray_start.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    head = RayHead(proc, f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}", env, temp_dir)
    try:
        deadline = time.time() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(temp_dir / 'ray_start.log').read_text()[-3000:]}")
            ok = subprocess.run([str(BIN / "ray"), "job", "list", "--address", head.dashboard], env=env,
                                capture_output=True, text=True, timeout=60)
            if ok.returncode == 0:
                break
            if time.time() > deadline:
                raise RuntimeError(f"Ray head not ready after {STARTUP_TIMEOUT_S}s: {ok.stderr[-2000:]}")
            time.sleep(2)
        yield head
    finally:
        stop_group(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and a local artifact store it serves."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    proc = launch_mlflow(port, f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "server.log", base_env(root),
                         STARTUP_TIMEOUT_S)
    try:
        yield MlflowServer(proc, f"http://127.0.0.1:{port}", root)
    finally:
        stop_group(proc, grace_s=MLFLOW_STOP_GRACE_S)
