"""Compute budgets: ``--budget smoke|cpu|laptop|full`` as dotted config overrides.

A budget only changes how much compute a run spends (image size, widths, data size, steps, evaluation
interval); it never touches the method's hyperparameters, so a configuration found under one budget
means the same thing under another (schedule lengths are fractions of ``train.max_steps``).

``portable_config_text`` writes a config as a portable best config: the method's hyperparameters only
(``COMPUTE_KEYS``, what a budget or the machine decides, are left out), under a comment header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from fgi.config import Config, flatten, override
from fgi.fields import OptionError

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
    },
    # A meaningful search on a laptop: `python tune.py --dataset synthetic` in minutes on 2 cores.
    "cpu": {
        "data.image_size": 48,
        "data.synthetic_train": 48,
        "data.synthetic_val": 16,
        "data.synthetic_test": 16,
        "model.teacher_widths": (8, 16, 16, 32, 32),
        "model.student_widths": (8, 8, 16, 16, 32),
        # the reference-exact student needs ~40 steps before its Dice leaves 0 (docs/RESULTS.md)
        "train.max_steps": 120,
        "train.eval_every": 20,
        "train.batch_size": 8,
    },
    # Real data on a CPU: 96 px, both networks 16..256. Quality protocol v2's compute: full supervision
    # reaches 0.79 val Dice on Kvasir-SEG in 5000 steps, about 0.39 s per step on 2 cores (docs/RESULTS.md);
    # a sweep can stop earlier with --max-steps.
    "laptop": {
        "data.image_size": 96,
        "model.teacher_widths": (16, 32, 64, 128, 256),
        "model.student_widths": (16, 32, 64, 128, 256),
        "train.max_steps": 5000,
        "train.eval_every": 250,
        "train.batch_size": 8,
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
    },
}


# where the data is, how big the run is, and how the machine runs it: never part of a portable config
MACHINE_KEYS = (
    "data.root", "data.cache_dir", "data.fixations", "data.split_dir", "data.num_workers", "text.vlm_path",
    "text.vlm_batch_size", "crf.work_size", "train.threads", "train.amp", "train.channels_last", "train.compile",
)


def compute_keys() -> frozenset[str]:
    """Dotted keys a budget or the machine decides: every budget's keys and ``MACHINE_KEYS``."""
    return frozenset(k for b in BUDGETS.values() for k in b) | frozenset(MACHINE_KEYS)


def without_machine(cfg: Config) -> Config:
    """``cfg`` with every ``MACHINE_KEYS`` entry at its default: no path or setting of the machine it ran on, so
    a released model's config travels to another machine."""
    defaults = flatten(Config())
    return override(cfg, {k: defaults[k] for k in MACHINE_KEYS})


def method_dict(cfg: Config, keep: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """The config's method hyperparameters as nested sections (compute keys dropped unless in ``keep``)."""
    drop = compute_keys() - set(keep)
    out: dict[str, dict[str, Any]] = {}
    for key, value in flatten(cfg).items():
        if key in drop:
            continue
        section, field = key.split(".", 1)
        out.setdefault(section, {})[field] = list(value) if isinstance(value, tuple) else value
    return out


def portable_config_text(cfg: Config, keep: Iterable[str], header: str) -> str:
    """YAML of a portable best config: ``header`` as comment lines, then ``method_dict(cfg, keep)``.

    Args:
        cfg: the best trial's config.
        keep: searched keys, kept even when they are compute keys.
        header: lines saying where the config came from (sweep, trial, metric, budget, commit).
    """
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + yaml.safe_dump(method_dict(cfg, keep), sort_keys=False)


def budget_names() -> list[str]:
    """Names accepted by ``--budget``."""
    return list(BUDGETS)


def budget_overrides(name: str) -> Mapping[str, Any]:
    """The dotted overrides of one budget.

    Raises:
        ConfigError: for an unknown budget, listing the valid names.
    """
    if name not in BUDGETS:
        raise OptionError("budget", f"unknown budget {name!r}; valid budgets are {budget_names()}")
    return BUDGETS[name]


def apply_budget(cfg: Config, name: str) -> Config:
    """Return ``cfg`` with the budget's overrides applied (validated like any override)."""
    return override(cfg, budget_overrides(name))


__all__ = ["BUDGETS", "MACHINE_KEYS", "apply_budget", "budget_names", "budget_overrides", "compute_keys", "method_dict",
           "portable_config_text", "without_machine"]
