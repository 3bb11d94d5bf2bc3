"""Warm start: earlier runs of the same method told to a new sweep's searcher, at the sweep's own fidelity.

A source is a folder of protocol records (``benchmarks/protocol_kvasir.py``: one JSON per run with its full
config and validation curve), a local sweep folder (``<storage>/<sweep>``, with its ``fgi_sweep.json``), or
``mlflow:<experiment>``, the trials of earlier sweeps on the sweep's tracking server (each trial's
``config.yaml`` and metric history). ``sweep_records`` turns a sweep folder into protocol records, the form
that outlives the sweep's storage. A run becomes a warm point when it is the sweep's
method at the sweep's fidelity:

- its config equals the sweep's base config on every key that is neither searched, a seed, nor where the
  data lives or how the machine runs (``fgi.budgets.MACHINE_KEYS``): same method, image size, widths,
  batch and schedule length;
- its searched values lie in the space (conditions and constraints included);
- its curve has the metric at the step the sweep's trials stop at (``SweepRecord.length``).

The point is told with the metric at that step, the figure a live trial of the sweep reports at its end, so a
5000-step record warms a 2000-step screening stage with its step-2000 value, never its final one. Every run
that does not qualify is counted with the first reason, so a user sees why a source told nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgi.budgets import MACHINE_KEYS
from fgi.config import Config, ConfigError, flatten, from_dict, load_yaml_text, to_dict
from fgi.search.params import canonical, plain
from fgi.search.settings import SWEEP_FILE, SweepRecord
from fgi.search.space import SearchSpace, space_from_text

MLFLOW_PREFIX = "mlflow:"  # a source naming an MLflow experiment rather than a records folder
_FREE_KEYS = frozenset(MACHINE_KEYS) | {"train.seed"}  # may differ between a warm run and the sweep


@dataclass(frozen=True)
class WarmPoint:
    """One earlier run told to the searcher: its name, searched config values, and metric at the stage length."""

    name: str
    values: dict[str, Any]
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": self.values, "value": self.value}


@dataclass(frozen=True)
class WarmStart:
    """The warm points of some sources and why the other runs were left out (``reason -> count``)."""

    points: tuple[WarmPoint, ...]
    skipped: dict[str, int]

    def summary(self) -> str:
        """One line: how many runs were told and why the others were not."""
        told = f"warm start: {len(self.points)} earlier run(s) told to the searcher"
        if not self.skipped:
            return told
        why = "; ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]))
        return f"{told}, {sum(self.skipped.values())} left out ({why})"


@dataclass(frozen=True)
class EarlierRun:
    """One earlier run as a source holds it: its name, config, metric curve and, when the source kept them, the
    per-image val Dice of its last state (protocol records' ``val_rows``)."""

    name: str
    config: Config
    curve: Mapping[int, float]  # step -> metric
    val_rows: Mapping[str, float] | None = None


def run_point(run: EarlierRun, space: SearchSpace, base: Mapping[str, Any], length: int) -> WarmPoint | str:
    """The point of ``run`` at step ``length`` (its searched values and metric there), or why it is not one of
    the sweep over ``space``; ``base`` is the sweep's base config flattened."""
    flat = flatten(run.config)
    fixed = next((k for k, v in base.items() if k not in _FREE_KEYS and k not in space.keys
                  and canonical(flat[k]) != canonical(v)), None)
    if fixed is not None:
        return f"differ from the sweep's base config on {fixed}"
    if length not in run.curve:
        return f"have no value at step {length}"
    values = {k: canonical(flat[k]) for k in space.keys}
    for k, v in values.items():
        if space.active(k, values) and not space.param(k).contains(v):
            return f"have {k} outside the space"
        if not space.active(k, values) and v != canonical(base[k]):
            return f"set {k}, which this space keeps fixed there"
    for c in space.constraints:  # keys outside the space equal the base's, checked above
        if c.lower in values and not values[c.lower] < canonical(flat[c.upper]):
            return f"break {c}"
    return WarmPoint(run.name, {k: plain(v) for k, v in values.items()}, float(run.curve[length]))


def _records(folder: Path, metric: str) -> tuple[list[EarlierRun], dict[str, int]]:
    if not folder.is_dir():
        raise ConfigError(f"warm start: {folder}: neither a folder of protocol records nor {MLFLOW_PREFIX}<experiment>")
    runs, bad = [], {}
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
            cfg = from_dict(rec["config"])
            curve = {int(row["step"]): float(row[metric]) for row in rec["curve"] if metric in row}
            rows = {str(r["id"]): float(r["dice"]) for r in rec["val_rows"]} if "val_rows" in rec else None
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            reason = f"unreadable records ({path.name}: {str(exc)[:80]})"
            bad[reason] = bad.get(reason, 0) + 1
            continue
        runs.append(EarlierRun(path.stem, cfg, curve, rows))
    return runs, bad


def sweep_records(folder: Path) -> list[dict[str, Any]]:
    """Protocol records (``arm``, ``seed``, ``config``, ``curve``) of the trials of a local sweep folder that
    reported at least once: the sweep's base config with each trial's searched values, and its reports.

    Raises:
        ConfigError: naming the folder, when it holds no readable ``fgi_sweep.json``.
    """
    sweep_file = folder / SWEEP_FILE
    if not sweep_file.is_file():
        raise ConfigError(f"warm start: {folder}: no {SWEEP_FILE}, so not a sweep folder")
    record = SweepRecord.from_json(sweep_file.read_text(), str(sweep_file))
    space = space_from_text(record.space_text, load_yaml_text(record.base_config, str(sweep_file)), str(sweep_file))
    out = []
    for trial in sorted(folder.glob("trial_*")):
        try:
            params = json.loads((trial / "params.json").read_text())
            rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            continue  # a trial that never started or reported
        if not rows:
            continue
        cfg = space.apply(space.values_of(params))
        curve = [{k: v for k, v in row.items() if k == "step" or k.startswith(("val_", "loss")) or k == "lr"}
                 for row in rows]
        out.append({"arm": f"{record.name}-{trial.name.removeprefix('trial_')}", "seed": cfg.train.seed,
                    "config": to_dict(cfg), "curve": curve})
    return out


def _sweep_runs(folder: Path, metric: str) -> list[EarlierRun]:
    return [EarlierRun(r["arm"], from_dict(r["config"]),
                 {int(row["step"]): float(row[metric]) for row in r["curve"] if metric in row})
            for r in sweep_records(folder)]


def _mlflow_runs(uri: str, experiment: str, metric: str) -> tuple[list[EarlierRun], dict[str, int]]:
    from fgi.tracking.history import TrialHistoryError, trial_histories

    try:
        histories, bad = trial_histories(uri, experiment, metric)
    except TrialHistoryError as exc:
        raise ConfigError(f"warm start: {MLFLOW_PREFIX}{experiment}: {exc}") from None
    runs = []
    for h in histories:
        try:
            runs.append(EarlierRun(h.name, load_yaml_text(h.config_text, f"{h.name} config.yaml"), h.curve))
        except ConfigError as exc:
            reason = f"unreadable trials ({str(exc)[:80]})"
            bad[reason] = bad.get(reason, 0) + 1
    return runs, bad


def read_source(source: str, metric: str, mlflow_uri: str) -> tuple[list[EarlierRun], dict[str, int]]:
    """The runs of one source (records folder, sweep folder or ``mlflow:<experiment>``) with their ``metric``
    curves, and the unreadable ones counted by reason.

    Raises:
        ConfigError: a source that is neither an existing folder nor an experiment on ``mlflow_uri``.
    """
    if source.startswith(MLFLOW_PREFIX):
        return _mlflow_runs(mlflow_uri, source[len(MLFLOW_PREFIX):], metric)
    if (Path(source).expanduser() / SWEEP_FILE).is_file():
        return _sweep_runs(Path(source).expanduser(), metric), {}
    return _records(Path(source).expanduser(), metric)


def warm_start(sources: Sequence[str], space: SearchSpace, metric: str, length: int, mlflow_uri: str) -> WarmStart:
    """The warm points of ``sources`` for a sweep over ``space`` whose trials stop at step ``length``.

    Args:
        sources: folders of protocol records, local sweep folders and ``mlflow:<experiment>`` names.
        space: the sweep's space (its ``base`` is the sweep's base config).
        metric: the sweep's metric (a curve key, e.g. ``val_dice``).
        length: the step the sweep's trials end at (its stop step, else ``train.max_steps``).
        mlflow_uri: the tracking URI the ``mlflow:`` sources are read from.

    Raises:
        ConfigError: a source that is neither an existing folder nor an experiment on ``mlflow_uri``.
    """
    points: list[WarmPoint] = []
    skipped: dict[str, int] = {}
    base = flatten(space.base)
    for source in sources:
        runs, bad = read_source(source, metric, mlflow_uri)
        for reason, n in bad.items():
            skipped[reason] = skipped.get(reason, 0) + n
        for run in runs:
            got = run_point(run, space, base, length)
            if isinstance(got, WarmPoint):
                points.append(got)
            else:
                skipped[got] = skipped.get(got, 0) + 1
    return WarmStart(tuple(points), skipped)


def with_warm_start(record: SweepRecord, space: SearchSpace, sources: Sequence[str]) -> SweepRecord:
    """``record`` with the warm points of ``sources`` at its stage length (read from its MLflow URI), once,
    when the sweep begins; ``--resume`` keeps them in the sweep file."""
    warm = warm_start(sources, space, record.metric, record.length(space.base.train.max_steps), record.mlflow_uri)
    return dataclasses.replace(record, warm_start=tuple(sources), warm_points=tuple(p.to_dict() for p in warm.points),
                               warm_note=warm.summary())


__all__ = ["MLFLOW_PREFIX", "EarlierRun", "WarmPoint", "WarmStart", "read_source", "run_point", "sweep_records",
           "warm_start", "with_warm_start"]
