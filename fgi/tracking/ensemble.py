"""The MLflow side of top-k ensembles: rank a sweep's trials, fetch their best checkpoints, log the ensemble.

The ensemble run is a child of the sweep's parent run (``fgi.kind`` ``ensemble``), so the MLflow UI lists it
under the sweep beside its trials; a resumed sweep leaves it alone (it closes only ``trial`` children).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgi.fields import OptionNotFound
from fgi.tracking.registry import register_model
from fgi.tracking.runs import _client, _log_metrics, _log_params, experiment_id
from fgi.tracking.trials import KIND_TAG, OUTCOME_TAG, PARENT_TAG, SWEEP_TAG, TRIAL_TAG, find_run, find_runs

CHECKPOINT_ARTIFACT = "checkpoint"  # where a trial run keeps its best checkpoint folder (TrialLogger)
ENSEMBLE_KIND = "ensemble"


@dataclass(frozen=True)
class TrialModel:
    """A trial run that holds a best checkpoint: its ids, outcome and best value of the ranking metric."""

    run_id: str
    trial_id: str
    outcome: str
    value: float
    step: int

    def describe(self) -> str:
        """One line: trial, run, value and step."""
        return f"trial {self.trial_id} (run {self.run_id}): {self.value:.4f} at step {self.step}"


def _trial_model(run: Any, metric: str) -> TrialModel | None:
    value = run.data.metrics.get(f"best_{metric}")
    if value is None or not math.isfinite(value):
        return None
    return TrialModel(run.info.run_id, run.data.tags.get(TRIAL_TAG, run.info.run_id),
                      run.data.tags.get(OUTCOME_TAG, ""), float(value), int(run.data.tags.get("fgi.best_step", 0)))


def ranked_trials(uri: str, experiment: str, sweep: str, metric: str = "val_dice",
                  mode: str = "max") -> tuple[list[TrialModel], int]:
    """The trials of ``sweep`` that ran to their end, best ``best_<metric>`` first, and how many were left out.

    Only finished trials compete, as for a sweep's best config: a trial stopped early holds an early value
    at a short schedule. Ties go to the earlier trial.

    Raises:
        OptionNotFound: no such experiment or sweep, naming it.
    """
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise OptionNotFound("experiment", f"no experiment {experiment!r} on {uri}")
    if find_run(client, exp.experiment_id, {SWEEP_TAG: sweep, KIND_TAG: "sweep"}) is None:
        raise OptionNotFound("sweep", f"no sweep {sweep!r} in experiment {experiment!r} on {uri}")
    runs = find_runs(client, exp.experiment_id, {SWEEP_TAG: sweep, KIND_TAG: "trial"})
    found = [t for t in (_trial_model(r, metric) for r in runs if r.data.tags.get(OUTCOME_TAG) == "finished") if t]
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted(found, key=lambda t: sign * t.value)  # sorted is stable: ties keep start order
    return ranked, len(runs) - len(ranked)


def listed_trials(uri: str, run_ids: Sequence[str], metric: str = "val_dice") -> list[TrialModel]:
    """Trial runs named by id, in the order given.

    Raises:
        OptionNotFound: a run that does not exist or holds no ``best_<metric>``, naming it.
    """
    from mlflow.exceptions import MlflowException

    client, out = _client(uri), []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise OptionNotFound("runs", f"no run {run_id!r} on {uri}") from None
        found = _trial_model(run, metric)
        if found is None:
            raise OptionNotFound("runs", f"run {run_id} holds no best_{metric}; it is not a trial that kept a checkpoint")
        out.append(found)
    return out


def download_checkpoint(uri: str, run_id: str, dst: str | os.PathLike) -> Path:
    """Download a trial run's best checkpoint folder under ``dst``; returns the local folder.

    Raises:
        LookupError: the run holds no checkpoint artifact, naming it.
    """
    from mlflow.exceptions import MlflowException

    try:
        return Path(_client(uri).download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(dst)))
    except (MlflowException, OSError) as exc:
        raise LookupError(f"run {run_id}: cannot download its {CHECKPOINT_ARTIFACT}/ ({str(exc)[:160]})") from None


def log_ensemble(uri: str, experiment: str, sweep: str | None, folder: str | os.PathLike, *, run_name: str,
                 params: Mapping[str, Any], metrics: Mapping[str, float], report: str,
                 register_as: str, trainer_class: type) -> tuple[str, str]:
    """Log an ensemble folder as a run (its params, val metrics, report ``ensemble.md``) and register its files
    as model ``register_as``.

    The run is a child of ``sweep``'s parent run when ``sweep`` is given.

    Returns:
        (run id, registered version).
    """
    client = _client(uri)
    exp_id = experiment_id(uri, experiment)
    tags = {KIND_TAG: ENSEMBLE_KIND}
    if sweep is not None:
        tags[SWEEP_TAG] = sweep
        parent = find_run(client, exp_id, {SWEEP_TAG: sweep, KIND_TAG: "sweep"})
        if parent is not None:
            tags[PARENT_TAG] = parent
    run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    try:
        _log_params(client, run_id, params)
        _log_metrics(client, run_id, metrics, 0)
        client.log_text(run_id, report, "ensemble.md")
        version = register_model(uri, run_id, folder, register_as, trainer_class, tags={KIND_TAG: ENSEMBLE_KIND})
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id, version


__all__ = ["CHECKPOINT_ARTIFACT", "ENSEMBLE_KIND", "TrialModel", "download_checkpoint", "listed_trials",
           "log_ensemble", "ranked_trials"]
