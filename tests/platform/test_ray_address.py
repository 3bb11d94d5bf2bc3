"""A sweep given no ``RAY_ADDRESS`` starts its own local Ray, whatever cluster this machine started last."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from fgi_platform import BIN, REPO, base_env

from tests.servers import free_port

pytestmark = pytest.mark.slow

START = textwrap.dedent("""
    import ray
    from fgi.search.trial import start_ray
    start_ray(False)
    print("gcs", ray.get_runtime_context().gcs_address)
    ray.shutdown()
""")


def test_a_stale_ray_start_address_is_not_attached_to(tmp_path):
    from ray._common.utils import get_ray_address_file

    # what `ray start --head` leaves behind once that head is gone: the address of a dead cluster
    address_file = Path(get_ray_address_file(None))
    address_file.parent.mkdir(parents=True, exist_ok=True)
    before = address_file.read_text() if address_file.is_file() else None
    dead = f"127.0.0.1:{free_port()}"
    address_file.write_text(dead)
    try:
        proc = subprocess.run([str(BIN / "python"), "-c", START], env=base_env(tmp_path / "home"), cwd=REPO,
                              capture_output=True, text=True, timeout=180)
    finally:
        if before is None:
            address_file.unlink(missing_ok=True)
        else:
            address_file.write_text(before)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gcs = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("gcs "))
    assert gcs != dead  # a fresh local Ray, not the dead cluster


def test_a_dead_tracking_server_fails_in_seconds_and_writes_nothing(tmp_path):
    import time

    storage, dead = tmp_path / "storage", f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke",
                           "--mlflow-uri", dead, "--storage", str(storage), "--name", "dead-server"],
                          env=base_env(tmp_path / "home"), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --mlflow-uri: {dead}: no MLflow tracking server answers")
    assert not storage.exists() and not (tmp_path / "home" / "ray_results").exists()


def test_joining_a_token_cluster_without_the_token_says_what_to_set(ray_head, tmp_path):
    env = {k: v for k, v in ray_head.env.items() if not k.startswith("RAY_AUTH")}
    env["RAY_ADDRESS"] = ray_head.gcs
    proc = subprocess.run([str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke",
                           "--num-samples", "1", "--storage", str(tmp_path / "storage"),
                           "--mlflow-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: RAY_ADDRESS={ray_head.gcs}: cannot join the Ray cluster") and \
        "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in last


def _token_env(tmp_path: Path) -> dict[str, str]:
    env = dict(base_env(tmp_path / "fgi"), HOME=str(tmp_path / "user"))
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    return env


def test_the_token_of_a_local_ray_is_readable_by_its_owner_only(tmp_path):
    import stat

    env = _token_env(tmp_path)
    token = tmp_path / "user" / ".ray" / "auth_token"
    proc = subprocess.run([str(BIN / "python"), "-c", START], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 64
    assert [p.name for p in token.parent.iterdir()] == ["auth_token"], "no temporary file left beside it"

    # a token Ray wrote earlier with the umask's 0644 is tightened, kept, and the sweep says so
    token.chmod(0o644)
    before = token.read_text()
    proc = subprocess.run([str(BIN / "python"), "-c", START], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == before
    assert f"fgi: {token} was readable by others (644); made it 0600" in proc.stderr
