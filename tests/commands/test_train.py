"""``fgi train``: a bad config, option or batch split is one line on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fgi.budgets import apply_budget
from fgi.cli import main
from fgi.config import Config, ConfigError, override, save_yaml
from fgi.search.final import final_config


def test_final_config_applies_budget_and_steps_on_top(tmp_path):
    path = tmp_path / "best.yaml"
    save_yaml(Config(), path)
    cfg, source = final_config(config=path, budget="smoke", max_steps=5)
    assert cfg == override(apply_budget(Config(), "smoke"), {"train.max_steps": 5})
    assert cfg.data.image_size == 32 and cfg.train.max_steps == 5 and source == str(path.resolve())
    with pytest.raises(ConfigError, match="exactly one of --config and --from-mlflow"):
        final_config()


@pytest.mark.parametrize("extra, needle", [
    (["--config", "{tmp}/absent.yaml"], "absent.yaml: config file not found"),
    (["--config", "{tmp}/best.yaml", "--max-steps", "0"], "--max-steps: must be > 0, got 0"),
    (["--config", "{tmp}/best.yaml", "--workers", "0"], "--workers: must be > 0, got 0"),
    (["--config", "{tmp}/best.yaml", "--workers", "3"], "train.batch_size: 8 does not split evenly over 3 workers"),
    (["--config", "{tmp}/best.yaml", "--data-root", "{tmp}/nowhere"], "--data-root: {tmp}/nowhere not found"),
    (["--config", "{tmp}/best.yaml", "--fixations", "{tmp}/f.csv"], "--fixations: {tmp}/f.csv not found"),
    (["--config", "{tmp}/best.yaml", "--alias", "champion", "--alias", "latest"], "--alias: 'latest' is not a valid alias"),
    (["--config", "{tmp}/best.yaml", "--alias", "v3"], "--alias: 'v3' is not a valid alias"),
    (["--config", "{tmp}/best.yaml", "--alias", "new champion"], "--alias: 'new champion' is not a valid alias"),
])
def test_user_input_errors_exit_2_with_one_line(tmp_path, capsys, extra, needle):
    save_yaml(Config(), tmp_path / "best.yaml")
    assert main(["train", *[a.format(tmp=tmp_path) for a in extra]]) == 2
    err = capsys.readouterr().err
    assert needle.format(tmp=tmp_path) in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_portable_config_takes_its_data_and_compute_from_the_options(tmp_path):
    cfg, _ = final_config(config=Path("best_configs/kvasir.yaml"), budget="smoke", data_root=str(tmp_path),
                          split_dir=str(tmp_path))
    assert cfg.data.dataset == "kvasir" and cfg.data.root == str(tmp_path) and cfg.data.split_dir == str(tmp_path)
    assert cfg.data.image_size == 32 and cfg.train.max_steps == 12 and cfg.data.fixations == ""
    # the schedule is the file's, as fractions of the run (the protocol's 30 % ramp-up and 2 % warm-up), not
    # the smoke budget's
    assert cfg.loss.rampup_fraction == pytest.approx(0.3) and cfg.optim.warmup_fraction == pytest.approx(0.02)


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.slow
def test_the_committed_kvasir_config_trains_on_the_shared_data(tmp_path):
    """``train.py --config best_configs/kvasir.yaml`` with the data and budget from the command line."""
    root, fixations = SHARED / "kvasir-seg", SHARED / "gazemedseg" / "kvasir_fixation.csv"
    if not (root / "images").is_dir() or not fixations.is_file():
        pytest.skip(f"the shared Kvasir-SEG data is not at {SHARED}")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "FGI_HOME": str(tmp_path), "RAY_ADDRESS": ""}
    # the command as a user types it: GazeMedSeg's CSV is found in the gazemedseg folder beside the data, and
    # with Kvasir-SEG's test images held back there is no test split, so the model is selected on val only
    cmd = [sys.executable, "train.py", "--config", "best_configs/kvasir.yaml", "--data-root", "../shared/data/kvasir-seg",
           "--budget", "smoke"]
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stderr[-4000:]
    assert f"fixations: {fixations.resolve()} (found beside --data-root" in out.stdout, out.stdout[-2000:]
    assert "no test split in the data" in out.stdout and '"test_dice"' not in out.stdout, out.stdout[-2000:]
    assert "registered models:/fgi-kvasir/1" in out.stdout, out.stdout[-2000:]
