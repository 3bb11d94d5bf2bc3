"""``fgi tune``: options become typed sweep options; user-input errors are one line and exit code 2."""

from __future__ import annotations

import argparse

import pytest

from fgi.cli import main
from fgi.commands import tune
from fgi.search.sweep import SweepOptions


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fgi tune")
    tune.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_option_reaches_the_sweep_options():
    args = _parse("--dataset", "kvasir", "--budget", "smoke", "--num-samples", "4", "--max-concurrent", "2",
                  "--workers-per-trial", "2", "--cpus-per-worker", "3", "--gpus-per-worker", "0.5", "--search", "random",
                  "--scheduler", "none", "--max-steps", "20", "--grace-steps", "8", "--metric", "val_hd95",
                  "--storage", "s", "--name", "n", "--resume", "--mlflow-uri", "u", "--experiment", "e",
                  "--time-budget", "60", "--seed", "3", "--max-failures", "0", "--trial-timeout", "300", "--best-dir", "b", "--space", "sp.yaml",
                  "--config", "c.yaml", "--root", "r", "--verbose")
    assert tune.options_of(args) == SweepOptions(
        dataset="kvasir", config="c.yaml", space="sp.yaml", budget="smoke", num_samples=4, max_concurrent=2,
        workers_per_trial=2, cpus_per_worker=3.0, gpus_per_worker=0.5, search="random", scheduler="none",
        max_steps=20, grace_steps=8, metric="val_hd95", storage="s", name="n", resume=True, mlflow_uri="u",
        experiment="e", time_budget=60.0, seed=3, max_failures=0, trial_timeout=300.0, best_dir="b", root="r", verbose=True)
    assert tune.options_of(_parse("--dataset", "kvasir", "--data-root", "d")).root == "d"
    assert tune.options_of(_parse("--dataset", "kvasir")).trial_timeout == 1800.0
    # --startup-trials goes with TPE only, so it is checked on its own
    assert tune.options_of(_parse("--dataset", "kvasir", "--startup-trials", "4")).startup_trials == 4


@pytest.mark.parametrize("extra, needle", [
    (["--num-samples", "0"], "error: --num-samples: must be > 0, got 0"),
    (["--space", "{tmp}/absent.yaml"], "absent.yaml: search space file not found"),
    (["--config", "{tmp}/absent.yaml"], "absent.yaml: config file not found"),
    (["--resume", "--storage", "{tmp}", "--name", "gone"], "--resume: {tmp}/gone/fgi_sweep.json not found"),
    (["--name", "../escape"], "--name: '../escape' is not a safe name"),
    (["--root", "{tmp}/nowhere"], "--data-root: {tmp}/nowhere not found (data.root)"),
    (["--workers-per-trial", "4096"], "--workers-per-trial: 4096 workers x 1 CPUs per worker need 4096 CPUs; this machine has"),
    (["--trial-timeout", "-1"], "error: --trial-timeout: must be >= 0, got -1.0"),
    (["--mlflow-uri", "file://{tmp}/mlruns"], "error: MLflow tracking URI file://{tmp}/mlruns: The filesystem tracking"),
])
def test_user_input_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, extra, needle):
    monkeypatch.setenv("FGI_HOME", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["tune", "--dataset", "synthetic", "--budget", "smoke", *[a.format(tmp=tmp_path) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle.format(tmp=tmp_path) in err and err.count("\n") == 1 and "Traceback" not in err, err
