"""Hyperparameter sweeps: Ray Tune + Optuna TPE (or Tune's random search) + ASHA over Ray Train trials.

``run_sweep(SweepOptions(...))`` validates the options and the search space, prepares the dataset
once, runs the sweep (or resumes it from its folder), and exports the best configuration to
``<best_dir>/<dataset>.yaml`` and to the MLflow parent run. A sweep's settings are saved in
``<storage>/<name>/fgi_sweep.json`` (a ``SweepRecord``) so that ``resume`` continues it as it started.

The searched values reach a trial in its Tune config under their dotted keys; the trial builds its
config from the prepared base with one ``override``. The first trial is the base configuration (the
published one unless ``config`` says otherwise).

Layering: ``search`` builds trials with ``fgi.distributed`` and logs through ``fgi.tracking``; with
``fgi.search_space`` it is the only code that knows Ray Tune and Optuna.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgi.config import Config, ConfigError, flatten, override, save_yaml
from fgi.paths import storage_path
from fgi.search_space import OptunaDefineByRun, SearchSpace
from fgi.sweep_settings import (
    METRIC_MODES,
    SCHEDULERS,
    SEARCHERS,
    SWEEP_FILE,
    SweepOptions,
    SweepRecord,
    new_record,
    saved_record,
    write_sweep_file,
)

_TRIAL_MEMORY = 64 * 1024**2  # Tune's reservation for a trial's driver; its Train workers reserve the CPUs/GPUs


@dataclass(frozen=True)
class SweepResult:
    """How a sweep ended.

    Args:
        name: the sweep name.
        path: the sweep's Tune folder.
        trials: trials run.
        failed: trials that ended with an error.
        metric: the optimized metric.
        best_metrics: the best trial's report at its best step; None when no trial reported ``metric``.
        best_config: the best trial's config (unprepared); None as above.
        best_config_path: where it was written.
        best_trial: the best trial's folder.
        importances: fANOVA importances of the searched keys (empty with fewer than two scored trials).
        experiment: the MLflow experiment.
        parent_run_id: the sweep's MLflow parent run.
    """

    name: str
    path: str
    trials: int
    failed: int
    metric: str
    best_metrics: dict[str, Any] | None
    best_config: Config | None
    best_config_path: Path | None
    best_trial: str | None
    importances: dict[str, float]
    experiment: str
    parent_run_id: str


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (sent to trials with ``tune.with_parameters``).

    Args:
        base: the prepared base config (``data.cache_dir`` set); a trial overrides the searched keys.
        keys: the searched dotted keys, read from the trial config.
        train_storage: where each trial's Ray Train run keeps its checkpoints (``<trial id>/``).
        workers: data-parallel workers per trial.
        cpus_per_worker: CPUs per worker.
        gpus_per_worker: GPUs per worker.
        max_failures: worker-group restarts inside a trial.
        metric: the validation metric.
        mode: "max" or "min".
    """

    base: Config
    keys: tuple[str, ...]
    train_storage: str
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    metric: str = "val_dice"
    mode: str = "max"


class ParamsOf:
    """The flattened config of a trial, as MLflow params (picklable, for the tracking callback)."""

    def __init__(self, base: Config, keys: Sequence[str]) -> None:
        self.flat, self.keys = flatten(base), tuple(keys)

    def __call__(self, trial_config: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.flat, **{k: trial_config[k] for k in self.keys}}


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune function trainable: one Ray Train ``TorchTrainer`` run per trial.

    The Train run is named after the trial id, so a retried or resumed trial continues from the run's
    latest checkpoint. Metrics and checkpoint paths reach Tune through ``TuneReportCallback``. Every
    trial uses the same seeds (trial offset 0): trials then differ only in their hyperparameters, and a
    trial's result is reproducible from its config alone.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from fgi import distributed

    cfg = override(settings.base, {k: config[k] for k in settings.keys})
    distributed.fit(cfg, storage_path=settings.train_storage, name=tune.get_context().get_trial_id(),
                    workers=settings.workers, cpus_per_worker=settings.cpus_per_worker,
                    gpus_per_worker=settings.gpus_per_worker, trial=0, max_failures=settings.max_failures,
                    callbacks=[TuneReportCallback()], metric=settings.metric, mode=settings.mode)


def _cluster_slots(workers: int, cpus: float, gpus: float) -> int:
    import ray

    res = ray.cluster_resources()
    slots = int(res.get("CPU", 1) // max(workers * cpus, 1e-9))
    if gpus:
        slots = min(slots, int(res.get("GPU", 0) // (workers * gpus)))
    if slots < 1:
        raise ConfigError(f"the cluster ({res.get('CPU', 0)} CPU, {res.get('GPU', 0)} GPU) cannot hold one trial of "
                          f"{workers} workers x ({cpus} CPU, {gpus} GPU)")
    return slots


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _new_tuner(trainable: Any, space: SearchSpace, record: SweepRecord, storage: str, callback: Any) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    concurrent = record.max_concurrent or _cluster_slots(record.workers, record.cpus_per_worker, record.gpus_per_worker)
    concurrent = min(concurrent, record.num_samples)
    first = space.search_point(space.published_point())
    if record.search == "tpe":
        import optuna

        sampler = optuna.samplers.TPESampler(seed=record.seed, multivariate=True)
        searcher: Any = ConcurrencyLimiter(
            OptunaSearch(OptunaDefineByRun(space), metric=record.metric, mode=record.mode, sampler=sampler,
                         points_to_evaluate=[first]),
            max_concurrent=concurrent)
        param_space: dict[str, Any] = {}
    else:
        searcher = BasicVariantGenerator(points_to_evaluate=[first], max_concurrent=concurrent, random_state=record.seed)
        param_space = space.to_tune()
    max_steps = space.base.train.max_steps
    scheduler = (ASHAScheduler(time_attr="step", max_t=max_steps, grace_period=min(record.grace_steps, max_steps),
                               reduction_factor=record.reduction_factor)
                 if record.scheduler == "asha" else FIFOScheduler())
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=record.metric, mode=record.mode, search_alg=searcher, scheduler=scheduler,
                                    num_samples=record.num_samples, time_budget_s=record.time_budget,
                                    max_concurrent_trials=concurrent, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=record.name, storage_path=storage, callbacks=[callback],
                                  failure_config=tune.FailureConfig(max_failures=record.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )


def run_sweep(options: SweepOptions) -> SweepResult:
    """Validate everything, prepare the data once, run (or resume) the sweep, export the best config.

    Starts a local Ray unless one is initialized or ``RAY_ADDRESS`` names a cluster.

    Raises:
        ConfigError: bad options, config or sweep file (``SearchSpaceError`` for the space), before any
            trial starts.
    """
    storage = storage_path(options.storage)
    record, space = saved_record(options, storage) if options.resume else new_record(options)
    import ray
    from ray import tune

    from fgi import distributed, tracking

    if options.resume:
        print(f"resuming sweep {record.name} with its saved settings ({storage}/{record.name}/{SWEEP_FILE})")
    uri = tracking.resolve_uri(options.mlflow_uri)
    print(f"sweep {record.name}: storage {storage}/{record.name}, MLflow {uri} (experiment {record.experiment})",
          flush=True)

    prepared = distributed.prepare(space.base)
    settings = TrialSettings(prepared, tuple(space.keys), f"{storage}/{record.name}/trials", record.workers,
                             record.cpus_per_worker, record.gpus_per_worker, record.max_failures, record.metric,
                             record.mode)
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                                    {"cpu": 0, "memory": _TRIAL_MEMORY})
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True, configure_logging=False)
    tracker = tracking.SweepTracker(uri, record.experiment, record.name, record.dataset)
    tracker.start(record.space_text, space.base, record.tracked_settings())

    path = f"{storage}/{record.name}"
    if options.resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        write_sweep_file(storage, record)
        callback = tracking.TrialCallback(uri, tracker.experiment_id, tracker.parent_run_id, record.name,
                                          ParamsOf(prepared, space.keys), space.base.train.max_steps, record.metric,
                                          record.mode)
        tuner = _new_tuner(trainable, space, record, storage, callback)
    return _finish(tuner.fit(), space, record, tracker, path)


def _best_row(result: Any, metric: str, mode: str) -> dict[str, Any] | None:
    df = result.metrics_dataframe
    if df is None or metric not in getattr(df, "columns", ()) or df[metric].dropna().empty:
        return None
    idx = df[metric].idxmax() if mode == "max" else df[metric].idxmin()
    return {k: v for k, v in df.loc[idx].to_dict().items() if isinstance(v, (int, float, str))}


def importances(space: SearchSpace, points: list[tuple[Mapping[str, Any], float]], mode: str, seed: int) -> dict[str, float]:
    """Optuna fANOVA importances of the searched keys from finished trials (needs two or more).

    Args:
        space: the search space.
        points: (config values, best metric) of each trial.
        mode: "max" or "min".
        seed: seed of the fANOVA forest.
    """
    import optuna

    if len(points) < 2:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = space.optuna_distributions()
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for values, score in points:
        params = {p.key: p.search_value(values[p.key]) for p in space.params}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(score)))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def _finish(results: Any, space: SearchSpace, record: SweepRecord, tracker: Any, path: str) -> SweepResult:
    scored = [(r, row) for r in results if (row := _best_row(r, record.metric, record.mode)) is not None]
    failed = sum(1 for r in results if r.error is not None)
    common = {"name": record.name, "path": path, "trials": len(results), "failed": failed, "metric": record.metric,
              "experiment": record.experiment, "parent_run_id": tracker.parent_run_id}
    if not scored:
        tracker.finish(None, None, None, failed=True)
        return SweepResult(best_metrics=None, best_config=None, best_config_path=None, best_trial=None,
                           importances={}, **common)
    sign = 1.0 if record.mode == "max" else -1.0
    best, row = max(scored, key=lambda item: sign * float(item[1][record.metric]))
    best_cfg = space.apply(space.values_of(best.config))
    points = [(space.values_of(r.config), float(r_row[record.metric])) for r, r_row in scored]
    try:
        imps = importances(space, points, record.mode, record.seed)
    except (ValueError, RuntimeError) as exc:
        print(f"parameter importances skipped: {exc}", file=sys.stderr)
        imps = {}
    tracker.finish(row, best_cfg, imps)
    out = Path(record.best_dir).expanduser().resolve() / f"{record.dataset}.yaml"
    save_yaml(best_cfg, out)
    return SweepResult(best_metrics=row, best_config=best_cfg, best_config_path=out, best_trial=best.path,
                       importances=imps, **common)


__all__ = [
    "METRIC_MODES", "SCHEDULERS", "SEARCHERS", "SWEEP_FILE", "ParamsOf", "SweepOptions", "SweepRecord", "SweepResult",
    "TrialSettings", "importances", "run_sweep", "run_trial",
]
