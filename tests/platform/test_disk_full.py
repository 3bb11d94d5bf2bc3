"""A sweep whose storage runs out of space on a real filesystem stops cleanly, and resumes once there is room.

The storage is a size-limited tmpfs mounted for the test (mounting needs root, as on the CI machine and the
development machine; elsewhere the test cannot make a real full disk and says so). A filler file leaves
less room than the sweep's checkpoints need.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from fgi_platform import BIN, REPO, base_env

pytestmark = pytest.mark.slow

SIZE_MB = 24
LEFT_MB = 5  # free after the filler: room for one smoke checkpoint (about 2 MB), not for the reserve of two
SWEEP_LIMIT_S = 480


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}M", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip()[:120]}); a real full disk needs it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_storage_stops_the_sweep_cleanly_and_resume_finishes_it(small_disk, tmp_path):
    from mlflow.tracking import MlflowClient

    from fgi.checkpoint import verify_state_file

    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * ((SIZE_MB - LEFT_MB) * 1024 * 1024))
    storage = small_disk / "storage"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = base_env(tmp_path / "home")
    command = [str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--scheduler", "none",
               "--num-samples", "2", "--max-concurrent", "1", "--cpus-per-worker", "1", "--mlflow-uri", uri,
               "--experiment", "disk", "--name", "disk", "--storage", str(storage), "--best-dir", str(tmp_path / "best")]
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=SWEEP_LIMIT_S)
    log = proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.returncode == 75, log
    last = proc.stderr.strip().splitlines()[-1]
    resume = f"python tune.py --dataset synthetic --resume --name disk --storage {shlex.quote(str(storage))}"
    assert last.startswith("stopped: ") and f"under {storage}/disk" in last, log
    assert last.endswith(f"Free space, then resume with: {resume}"), log

    # nothing written in half: every checkpoint on the full disk reads whole
    states = list(storage.rglob("trainer.pt"))
    for state in states:
        verify_state_file(state)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("disk")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "sweep")
    assert parent.info.status == "KILLED"

    filler.unlink()
    proc = subprocess.run([*command[:2], *shlex.split(resume)[2:]], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=SWEEP_LIMIT_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    trials = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial"]
    assert len(trials) == 2 and all(r.data.tags["fgi.outcome"] == "finished" for r in trials), \
        [(r.info.run_name, r.data.tags.get("fgi.outcome")) for r in trials]
    assert Path(tmp_path / "best" / "synthetic.yaml").is_file()
