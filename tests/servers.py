"""Real servers of the slow tests: free ports on 127.0.0.1, process-group shutdown, MLflow and PostgreSQL.

Every process started here runs in its own process group and is stopped by its PID (``stop_group``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
LOG_TAIL_CHARS = 3000  # how much of a server's log a startup failure shows
# on SIGTERM uvicorn waits for clients' idle keep-alive connections (the test's MlflowClient holds some);
# every request is committed when answered, so a short grace loses nothing
MLFLOW_STOP_GRACE_S = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the process group of ``proc`` (its PID), then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as exc:
        return f"(no log: {exc})"


def wait_until_healthy(proc: subprocess.Popen, uri: str, log: Path, timeout_s: float, poll_s: float = 1.0) -> None:
    """Poll ``<uri>/health`` until the server answers 200.

    Args:
        proc: the server process.
        uri: its base URL.
        log: its log file, whose tail goes into the error.
        timeout_s: how long it may take.
        poll_s: pause between two tries.

    Raises:
        RuntimeError: the process exited, or did not answer within ``timeout_s``; with the log's tail.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server {uri} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server {uri} not ready after {timeout_s:.0f} s:\n{_tail(log)}")
        time.sleep(poll_s)


def launch_mlflow(port: int, backend_uri: str, artifacts: Path, log: Path, env: Mapping[str, str],
                  timeout_s: float, poll_s: float = 1.0) -> subprocess.Popen:
    """Start ``mlflow server`` on 127.0.0.1:``port`` in its own process group and wait until it is healthy.

    Args:
        port: the port it binds.
        backend_uri: its backend store (``sqlite:///...``, ``postgresql+psycopg2://...``).
        artifacts: the local folder it serves artifacts from.
        log: file its output is appended to.
        env: its environment.
        timeout_s: how long it may take to answer ``/health``.
        poll_s: pause between two health checks.

    Raises:
        RuntimeError: it exited or did not answer in time (it is stopped first); the message holds its log's tail.
    """
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts)]
    with open(log, "a") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}", log, timeout_s, poll_s)
    except BaseException:
        stop_group(proc)
        raise
    return proc


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    candidates = [found] if found else sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    for c in candidates:
        if c and (Path(c).parent / "pg_ctl").is_file():
            return Path(c).parent
    return None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (Debian's ``initdb`` + ``pg_ctl``) on 127.0.0.1, a free port, trust auth,
    with an empty database ``mlflow``; run as the ``postgres`` user when the tests run as root.

    Yields:
        The SQLAlchemy URI of database ``mlflow``.

    Skips the test when the server binaries, ``psycopg2`` or (as root) the ``postgres`` user are missing.
    """
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2-binary not installed (pip install 'fgi[test]')")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="fgi-pg-", dir="/tmp"))  # short: the unix socket lives here
    if os.geteuid() == 0:  # initdb refuses root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    try:
        subprocess.run([*run_as, str(pg / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=300)
        subprocess.run([*run_as, str(pg / "pg_ctl"), "-D", str(data), "-l", str(root / "pg.log"), "-w", "-t", "120",
                        "-o", f"-p {port} -h 127.0.0.1 -k {root}", "start"], check=True, capture_output=True,
                       timeout=180)
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"  # SQLAlchemy 2.1 defaults to psycopg 3
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text().split()[0])
            subprocess.run([*run_as, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=120)
            if pid_file.is_file():  # the postmaster removes it when it ends: pg_ctl stop did not end it
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(root, ignore_errors=True)
