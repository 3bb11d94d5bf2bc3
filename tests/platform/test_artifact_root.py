"""A tracking server whose artifact root cannot be written fails a sweep in seconds, before anything is written.

The artifact root is a read-only tmpfs mounted for the test (mounting needs root, as on the CI machine and
the development machine; elsewhere the test cannot make a real unwritable root and says so): file
permissions alone do not stop root.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from fgi_platform import BIN, REPO, base_env

from tests.servers import free_port, launch_mlflow, stop_group

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120


def _mount(path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:120]}); a real unwritable root needs it")


def test_an_unwritable_artifact_root_fails_the_sweep_in_seconds(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    _mount(artifacts, "size=4M,ro")
    server = None
    try:
        port = free_port()
        server = launch_mlflow(port, f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts, tmp_path / "server.log",
                               base_env(tmp_path), STARTUP_TIMEOUT_S)
        uri, storage = f"http://127.0.0.1:{port}", tmp_path / "storage"
        t0 = time.monotonic()
        proc = subprocess.run([str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke",
                               "--mlflow-uri", uri, "--storage", str(storage), "--name", "ro", "--experiment", "ro"],
                              env=base_env(tmp_path / "home"), cwd=REPO, capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - t0
    finally:
        if server is not None:
            stop_group(server)
        subprocess.run(["umount", "-l", str(artifacts)], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: --mlflow-uri: {uri}: the server cannot store artifacts of experiment 'ro'")
    assert "--artifacts-destination" in lines[0]
    assert elapsed < 60, f"failed after {elapsed:.0f} s"
    assert not storage.exists(), "no sweep file, no Ray storage"


def test_a_writable_artifact_root_keeps_no_probe(tmp_path):
    from fgi.tracking import check_artifacts

    artifacts = tmp_path / "artifacts"
    port = free_port()
    server = launch_mlflow(port, f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts, tmp_path / "server.log",
                           base_env(tmp_path), STARTUP_TIMEOUT_S)
    try:
        check_artifacts(f"http://127.0.0.1:{port}", "fine")
    finally:
        stop_group(server)
    assert not [p for p in artifacts.rglob("*") if p.is_file()], "the probe file was deleted"
