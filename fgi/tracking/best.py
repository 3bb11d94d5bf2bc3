"""Which sweep's best config ``fgi best`` takes: the MLflow-free choice among an experiment's sweep parent runs.

A sweep's parent run (``fgi.tracking.SweepTracker``) ends FINISHED with the best trial's numbers as
``best_<metric>`` metrics and its portable best config as ``best_config.yaml``. Among the FINISHED ones
the best by a metric wins, never the newest: a smoke sweep started after a long one does not replace it.
A sweep named on purpose is taken whatever its metric.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fgi.fields import OptionNotFound
from fgi.tracking.trials import KIND_TAG, SWEEP_TAG, find_runs

BEST_CONFIG_ARTIFACT = "best_config.yaml"
MODES = ("max", "min")
BUDGET_PARAM = "sweep.budget"  # the parent run's param naming the sweep's budget (SweepRecord.tracked_settings)


@dataclass(frozen=True)
class SweepChoice:
    """The sweep whose best config was taken.

    Args:
        run_id: its parent run.
        sweep: its name (``fgi.sweep`` tag).
        metric: the ranking metric.
        mode: "max" or "min".
        value: its ``best_<metric>``; None when a named sweep did not log it.
        budget: its budget (``sweep.budget`` param), "" when not logged.
        ranked: how many FINISHED sweeps were ranked; 0 when the sweep was named.
        text: the ``best_config.yaml`` text.
    """

    run_id: str
    sweep: str
    metric: str
    mode: str
    value: float | None
    budget: str
    ranked: int
    text: str = ""

    def describe(self) -> str:
        """One line: sweep, run, metric, budget and how it was chosen."""
        value = "not logged" if self.value is None else f"{self.value:.4f}"
        how = "named with --sweep" if not self.ranked else (
            f"the {self.mode} best_{self.metric} of {self.ranked} finished sweep(s)")
        return (f"sweep {self.sweep} (run {self.run_id}): best_{self.metric} {value}, budget {self.budget or '?'}; "
                f"{how}")


def choose_sweep(runs: Sequence[Any], has_config: Callable[[Any], bool], *, metric: str, mode: str,
                 sweep: str | None = None, budget: str | None = None) -> SweepChoice:
    """Pick a sweep parent run: sweep ``sweep`` (its newest run with a best config), else the FINISHED one
    with the best ``best_<metric>`` (``mode``) that has a best config; ties go to the newest.

    Args:
        runs: the experiment's sweep parent runs (``mlflow.entities.Run``), newest first.
        has_config: whether a run holds ``best_config.yaml``.
        metric: ranking metric, e.g. ``val_dice`` (the parent logs ``best_val_dice``).
        mode: "max" or "min".
        sweep: a sweep name; taken whatever its metric or status.
        budget: only rank sweeps of this budget (``sweep.budget`` param).

    Raises:
        ValueError: a mode other than "max" or "min".
        LookupError: no such sweep, or no FINISHED sweep with the metric and a best config; the message
            lists the sweeps there.
    """
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {list(MODES)}, got {mode!r}")
    key = f"best_{metric}"
    names = sorted({r.data.tags.get(SWEEP_TAG, "") for r in runs})
    if sweep is not None:
        for run in (r for r in runs if r.data.tags.get(SWEEP_TAG) == sweep):
            if has_config(run):
                return _choice(run, metric, mode, 0)
        raise OptionNotFound("sweep", f"no sweep {sweep!r} with a best_config.yaml; sweeps there: {names}")
    ranked = [r for r in runs if r.info.status == "FINISHED" and key in r.data.metrics
              and (budget is None or r.data.params.get(BUDGET_PARAM) == budget)]
    sign = 1.0 if mode == "max" else -1.0
    ranked.sort(key=lambda r: sign * r.data.metrics[key], reverse=True)  # stable: equal values stay newest first
    for run in ranked:
        if has_config(run):
            return _choice(run, metric, mode, len(ranked))
    of_budget = f" of budget {budget!r}" if budget is not None else ""
    raise LookupError(f"no FINISHED sweep{of_budget} with {key} and a best_config.yaml; sweeps there: {names}")


def best_sweep(client: Any, experiment_id: str, experiment: str, *, metric: str, mode: str, sweep: str | None = None,
               budget: str | None = None) -> SweepChoice:
    """``choose_sweep`` over the sweep parent runs of an experiment, with the chosen ``best_config.yaml`` text.

    Args:
        client: an ``MlflowClient``.
        experiment_id: the experiment's id.
        experiment: its name, for messages.
        metric, mode, sweep, budget: as in ``choose_sweep``.

    Raises:
        LookupError: as ``choose_sweep``, naming the experiment.
    """
    runs = find_runs(client, experiment_id, {KIND_TAG: "sweep"}, order="DESC")

    def has_config(run: Any) -> bool:
        return BEST_CONFIG_ARTIFACT in {a.path for a in client.list_artifacts(run.info.run_id)}

    try:
        choice = choose_sweep(runs, has_config, metric=metric, mode=mode, sweep=sweep, budget=budget)
    except OptionNotFound:
        raise
    except LookupError as exc:
        raise OptionNotFound("experiment", f"{experiment!r}: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(client.download_artifacts(choice.run_id, BEST_CONFIG_ARTIFACT, tmp)).read_text()
    return replace(choice, text=text)


def _choice(run: Any, metric: str, mode: str, ranked: int) -> SweepChoice:
    value = run.data.metrics.get(f"best_{metric}")
    return SweepChoice(run_id=run.info.run_id, sweep=run.data.tags.get(SWEEP_TAG, ""), metric=metric, mode=mode,
                       value=None if value is None else float(value), budget=run.data.params.get(BUDGET_PARAM, ""),
                       ranked=ranked)


__all__ = ["BEST_CONFIG_ARTIFACT", "BUDGET_PARAM", "MODES", "SweepChoice", "best_sweep", "choose_sweep"]
