"""In-process and Ray Train trials: what each reserves, which config it trains, which device it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from fgi.budgets import apply_budget
from fgi.config import Config, ConfigError
from fgi.search.trial import TrialSettings, trial_device

BASE = apply_budget(Config(), "smoke")


def test_one_worker_trains_in_process_and_reserves_its_worker_resources():
    one = TrialSettings(BASE, ("loss.tau_pos",), "/tmp/s", workers=1, cpus_per_worker=2.0, gpus_per_worker=0.5)
    assert one.in_process and one.resources() == {"cpu": 2.0, "gpu": 0.5}
    ddp = TrialSettings(BASE, ("loss.tau_pos",), "/tmp/s", workers=2, cpus_per_worker=2.0)
    assert not ddp.in_process and ddp.resources()["cpu"] == 0 and ddp.resources()["memory"] > 0


def test_a_trial_config_is_the_base_with_the_searched_values_only():
    settings = TrialSettings(BASE, ("loss.tau_pos", "optim.lr"), "/tmp/s")
    cfg = settings.trial_config({"loss.tau_pos": 0.9, "optim.lr": 0.01, "loss.tau_neg": 0.3, "ignored|label": 1})
    assert (cfg.loss.tau_pos, cfg.optim.lr) == (0.9, 0.01)
    assert cfg.loss.tau_neg == BASE.loss.tau_neg and cfg.data == BASE.data


def test_trial_device_is_the_cpu_without_gpus():
    assert trial_device(0.0) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^gpus_per_worker: 1.0 GPUs reserved but torch sees no CUDA"):
            trial_device(1.0)
    else:
        assert trial_device(1.0) == torch.device("cuda", 0)


STALLED_TUNE = textwrap.dedent('''
    import glob, json, os, sys, tempfile, time
    import ray
    from ray import tune
    from fgi.run.worker import prepare
    from fgi.budgets import apply_budget
    from fgi.config import Config, override
    from fgi.search.trial import TrialSettings, trainable

    out, timeout = sys.argv[1], float(sys.argv[2])

    class StallAtFirstResult(tune.Callback):
        """Holds Tune's loop at the trial's first result (as a slow callback on the Tune loop once did), so
        the trial's next ``tune.report`` waits forever on its one-slot queue; lets go once the trial's
        process is gone, or after 60 s."""

        def __init__(self):
            self.seen = False

        def on_trial_result(self, iteration, trials, trial, result):
            if self.seen:
                return
            self.seen = True
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    os.kill(result["pid"], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            with open(os.path.join(out, "stall.json"), "w") as fh:
                json.dump({"step": result["step"], "process_ended": time.monotonic() < deadline}, fh)

    cfg = prepare(override(apply_budget(Config(), "smoke"), {"train.threads": 1}))
    temp = tempfile.mkdtemp(prefix="fgi-ray-", dir="/tmp")  # short: Ray's unix sockets live under it
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False, _temp_dir=temp)
    try:
        settings = TrialSettings(cfg, (), os.path.join(out, "trials"), trial_timeout=timeout)
        tuner = tune.Tuner(trainable(settings), tune_config=tune.TuneConfig(num_samples=1),
                           run_config=tune.RunConfig(name="stalled", storage_path=os.path.join(out, "storage"),
                                                     callbacks=[StallAtFirstResult()], verbose=0,
                                                     failure_config=tune.FailureConfig(max_failures=0)))
        result = tuner.fit()[0]
        logs = [open(p).read() for p in glob.glob(os.path.join(temp, "session_latest", "logs", "worker-*.err"))]
    finally:
        ray.shutdown()
    print(json.dumps({"error": repr(result.error), "logs": [line for text in logs for line in text.splitlines()
                                                            if line.startswith("fgi: trial")]}))
''')


@pytest.mark.slow
def test_a_trial_stuck_in_a_tune_report_ends_as_an_error_instead_of_hanging(tmp_path):
    """The real in-process trial (``run_in_process``) under a 15 s watchdog, with Tune's loop stalled."""
    timeout = 15.0
    env = dict(os.environ, FGI_HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", STALLED_TUNE, str(tmp_path), str(timeout)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stall = json.loads((tmp_path / "stall.json").read_text())
    assert stall == {"step": 4, "process_ended": True}, stall
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] != "None" and "died" in out["error"].lower(), out
    assert len(out["logs"]) == 1 and f"(limit --trial-timeout {timeout:g} s)" in out["logs"][0], out
    print(f"stalled trial ended as an error in {time.monotonic() - t0:.0f} s")
