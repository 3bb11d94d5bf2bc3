"""``fgi train``: a bad config, option or batch split is one line on stderr and exit code 2."""

from __future__ import annotations

import pytest

from fgi.budgets import apply_budget
from fgi.cli import main
from fgi.config import Config, ConfigError, override, save_yaml
from fgi.final import final_config


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
])
def test_user_input_errors_exit_2_with_one_line(tmp_path, capsys, extra, needle):
    save_yaml(Config(), tmp_path / "best.yaml")
    assert main(["train", *[a.format(tmp=tmp_path) for a in extra]]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
