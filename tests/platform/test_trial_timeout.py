"""``--trial-timeout`` on a real local Ray: a trial that is slow but alive runs to its end, a stalled one is ended.

The fault is injected into the real trial processes: a ``sitecustomize`` on ``PYTHONPATH`` (which the local Ray's
workers inherit) wraps ``TeacherStudentTrainer.train_step`` when a process imports the engine, so that each
step sleeps (slow) or one step never returns (stalled). The watchdog under test is the product's own.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

import pytest
from fgi_platform import BIN, REPO, base_env

pytestmark = pytest.mark.slow

TIMEOUT_S = 30  # the sweep's --trial-timeout
SLOW_STEP_S = 10  # each step of the slow trial: well inside the timeout, while its 4 steps add up to more
SWEEP_LIMIT_S = 480

INJECT = textwrap.dedent('''
    import importlib.abc, importlib.machinery, os, sys, time

    MARKER = os.environ.get("FGI_TEST_STALL_MARKER", "")


    def _stalls():
        """The first trial process to claim the marker stalls; every later one is slow."""
        try:
            os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False


    def _inject(cls):
        original, role = cls.train_step, []

        def train_step(self, batch):
            if not role:
                role.append("stall" if _stalls() else "slow")
            if role[0] == "slow":
                time.sleep(float(os.environ["FGI_TEST_SLOW_STEP_S"]))
            elif self.step >= int(os.environ["FGI_TEST_STALL_STEP"]):
                time.sleep(3600)
            return original(self, batch)

        cls.train_step = train_step


    class _Patch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "fgi.method.engine":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _inject(module.TeacherStudentTrainer)

            spec.loader.exec_module = exec_module
            return spec


    if MARKER:
        sys.meta_path.insert(0, _Patch())
''')


def test_the_watchdog_ends_a_stalled_trial_and_spares_a_slow_one(tmp_path):
    from mlflow.tracking import MlflowClient

    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT)
    env = dict(base_env(tmp_path / "home"), FGI_TEST_STALL_MARKER=str(tmp_path / "stalled"),
               FGI_TEST_STALL_STEP="2", FGI_TEST_SLOW_STEP_S=str(SLOW_STEP_S))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(inject), env.get("PYTHONPATH", "")) if p)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "python"), "tune.py", "--dataset", "synthetic", "--budget", "smoke",
                           "--scheduler", "none", "--num-samples", "2", "--max-concurrent", "1", "--max-steps", "4",
                           "--cpus-per-worker", "1",
                           "--trial-timeout", str(TIMEOUT_S), "--max-failures", "0", "--mlflow-uri", uri,
                           "--experiment", "timeouts", "--name", "timeouts", "--storage", str(tmp_path / "storage"),
                           "--best-dir", str(tmp_path / "best")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=SWEEP_LIMIT_S)
    elapsed = time.monotonic() - t0
    log = proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "stalled").is_file(), "the fault was injected: " + log
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("timeouts")
    trials = sorted((r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial"),
                    key=lambda r: r.info.start_time)
    assert len(trials) == 2, log
    stalled, slow = trials
    # the first trial's step 2 sleeps an hour: its watchdog ended it, and the sweep went on
    assert (stalled.info.status, stalled.data.tags["fgi.outcome"]) == ("FAILED", "failed"), log
    assert elapsed < SWEEP_LIMIT_S / 2, f"the sweep ended after {elapsed:.0f} s"
    # the second trial's steps each took SLOW_STEP_S, inside the timeout, and all of them more: it finished
    assert (slow.info.status, slow.data.tags["fgi.outcome"]) == ("FINISHED", "finished"), log
    assert (slow.info.end_time - slow.info.start_time) / 1000 > TIMEOUT_S
