"""Compute budgets: ``--budget smoke|cpu|full`` as dotted config overrides.

A budget only changes how much compute a run spends (image size, widths, data size, steps, evaluation
interval); it never touches the method's hyperparameters, so a configuration found under one budget
means the same thing under another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fgi.config import Config, ConfigError, override

BUDGETS: dict[str, dict[str, Any]] = {
    # Seconds per trial on one CPU core: for tests and CI.
    "smoke": {
        "data.image_size": 32,
        "data.synthetic_train": 16,
        "data.synthetic_val": 8,
        "data.synthetic_test": 8,
        "model.teacher_widths": (8, 8, 16, 16, 32),
        "model.student_widths": (8, 8, 8, 16, 16),
        "train.max_steps": 12,
        "train.eval_every": 4,
        "train.batch_size": 4,
        "optim.warmup_steps": 2,
        "loss.rampup_steps": 6,
    },
    # A meaningful search on a laptop: `python tune.py --dataset synthetic` in minutes on 2 cores.
    "cpu": {
        "data.image_size": 48,
        "data.synthetic_train": 48,
        "data.synthetic_val": 16,
        "data.synthetic_test": 16,
        "model.teacher_widths": (8, 16, 16, 32, 32),
        "model.student_widths": (8, 8, 16, 16, 32),
        "train.max_steps": 60,
        "train.eval_every": 15,
        "train.batch_size": 8,
        "optim.warmup_steps": 5,
        "loss.rampup_steps": 30,
    },
    # Paper scale, for GPUs: 224 px, the published widths (teacher 64..1024, student 32..512), and about
    # 90 epochs of a 900-image training set at batch 8.
    "full": {
        "data.image_size": 224,
        "model.teacher_widths": (64, 128, 256, 512, 1024),
        "model.student_widths": (32, 64, 128, 256, 512),
        "train.max_steps": 10000,
        "train.eval_every": 250,
        "train.batch_size": 8,
        "optim.warmup_steps": 250,
    },
}


def budget_names() -> list[str]:
    """Names accepted by ``--budget``."""
    return list(BUDGETS)


def budget_overrides(name: str) -> Mapping[str, Any]:
    """The dotted overrides of one budget.

    Raises:
        ConfigError: for an unknown budget, listing the valid names.
    """
    if name not in BUDGETS:
        raise ConfigError(f"--budget: unknown budget {name!r}; valid budgets are {budget_names()}")
    return BUDGETS[name]


def apply_budget(cfg: Config, name: str) -> Config:
    """Return ``cfg`` with the budget's overrides applied (validated like any override)."""
    return override(cfg, budget_overrides(name))


__all__ = ["BUDGETS", "apply_budget", "budget_names", "budget_overrides"]
