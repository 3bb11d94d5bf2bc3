"""In-process and Ray Train trials: what each reserves, which config it trains, which device it uses."""

from __future__ import annotations

import pytest
import torch

from fgi.budgets import apply_budget
from fgi.config import Config, ConfigError
from fgi.trial import TrialSettings, trial_device

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
        with pytest.raises(ConfigError, match="--gpus-per-worker: 1.0 GPUs reserved but torch sees no CUDA"):
            trial_device(1.0)
    else:
        assert trial_device(1.0) == torch.device("cuda", 0)
