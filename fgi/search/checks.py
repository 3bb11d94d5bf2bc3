"""Checks of sweep options that need no sweep record: numbers, names, data paths and the objectives.

``METRIC_MODES`` gives every metric a sweep can optimize with its direction: the val metrics of the
deployable predictor and its inference cost (``fgi.run.worker.inference_cost``: ms per image and
parameters in millions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from fgi.config import Config, ConfigError
from fgi.fields import OptionError

METRIC_MODES = {"val_dice": "max", "val_iou": "max", "val_hd95": "min", "val_asd": "min",
                "infer_ms": "min", "infer_mparams": "min"}
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # a folder name (not hidden) and an MLflow tag value
MAX_NAME = 200  # characters: the sweep folder's name, with trial folders and files under it, stays under 255
DATA_PATHS = {"data.root": "--data-root",  # tune also takes --root
              "data.fixations": "--fixations", "data.split_dir": "--split-dir"}
MULTI_OBJECTIVE_SEARCHERS = ("tpe", "nsga2")  # Optuna samplers that take several objectives


def positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise OptionError(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def one_of(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise OptionError(name, f"{value!r} is not one of {list(valid)}")


def check_name(name: str) -> None:
    """A sweep name is letters, digits and ``._-``, at most ``MAX_NAME`` long, not starting with ``.``
    (a visible folder name; no ``..``).

    Raises:
        OptionError: naming the bad name.
    """
    if len(name) > MAX_NAME:
        raise OptionError("name", f"{len(name)} characters; at most {MAX_NAME} (it names a folder)")
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise OptionError("name", f"{name!r} is not a safe name (letters, digits and ._- only, not starting "
                                  "with '.', no '..')")


def check_data_paths(cfg: Config) -> None:
    """Every local data path the config names exists (checked before Ray or MLflow start).

    Raises:
        ConfigError: naming the option and the missing path.
    """
    for key, flag in DATA_PATHS.items():
        section, field = key.split(".")
        value = getattr(getattr(cfg, section), field)
        if value and "://" not in value and not Path(value).expanduser().exists():
            raise ConfigError(f"{flag}: {value} not found ({key})")




def check_objectives(objectives: Sequence[str], metric: str, *, scheduler: str, search: str, warm_start: bool,
                     final_stage: bool, seeds_per_trial: int) -> None:
    """Several objectives: distinct known metrics, the first one ``metric``, and only where a front makes sense.

    Raises:
        OptionError: naming the option that conflicts.
    """
    if not objectives:
        return
    for name in objectives:
        one_of("metric", name, sorted(METRIC_MODES))
    if len(set(objectives)) != len(objectives) or len(objectives) < 2:
        raise OptionError("metric", f"give two or more different objectives, got {list(objectives)}")
    if objectives[0] != metric:
        raise OptionError("metric", f"the first objective {objectives[0]!r} is the sweep's metric, not {metric!r}")
    conflicts = {"scheduler": scheduler != "none", "search": search not in MULTI_OBJECTIVE_SEARCHERS,
                 "warm_start": warm_start, "final_stage": final_stage, "seeds_per_trial": seeds_per_trial > 1}
    why = {"scheduler": "early stopping ranks on one metric; use --scheduler none",
           "search": f"the multi-objective searchers are {list(MULTI_OBJECTIVE_SEARCHERS)}",
           "warm_start": "earlier runs are told one value each", "final_stage": "it compares one val metric",
           "seeds_per_trial": "seed groups average one metric"}
    for name, bad in conflicts.items():
        if bad:
            raise OptionError(name, f"not with several objectives ({why[name]})")


__all__ = ["DATA_PATHS", "MAX_NAME", "METRIC_MODES", "MULTI_OBJECTIVE_SEARCHERS", "SAFE_NAME", "check_data_paths",
           "check_name", "check_objectives", "one_of", "positive"]
