"""Hyperparameter sweeps: Ray Tune + Optuna TPE (or Tune's random search) + ASHA over Ray Train trials.

``run_sweep(SweepOptions(...))`` validates the options and the search space, prepares the dataset
once, runs the sweep (or resumes it from its folder), and exports the best configuration to
``<best_dir>/<dataset>.yaml`` and to the MLflow parent run. A sweep's settings are saved in
``<storage>/<name>/fgi_sweep.json`` (a ``SweepRecord``) so that ``resume`` continues it as it started.

The searched values reach a trial in its Tune config under their dotted keys; the trial builds its
config from the prepared base with one ``override``. The first trial is the base configuration (the
published one unless ``config`` says otherwise).

A trial with one worker trains inside its Tune trial's process; with more, it runs a Ray Train DDP run
(``fgi.search.trial``). The console shows one line per finished trial, the sweep's progress and one summary;
``verbose`` brings Ray's own output back. Everything a user can get wrong (options, names, data paths,
a cluster too small for one trial) is checked before Ray starts or an MLflow run exists.

Layering: ``search`` builds trials with ``fgi.search.trial`` and logs through ``fgi.tracking``; with
``fgi.search.space`` it is the only code that knows Ray Tune and Optuna.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgi.budgets import portable_config_text
from fgi.config import Config, ConfigError, flatten, load_yaml_text
from fgi.fields import OptionError
from fgi.files import atomic_write_text
from fgi.paths import git_commit, storage_path
from fgi.search.ranking import best_row, importances
from fgi.search.searchers import SearcherRequest, build_searcher
from fgi.search.settings import (
    DATA_PATHS,
    DEFAULT_TRIAL_TIMEOUT,
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
from fgi.search.space import SearchSpace
from fgi.search.trial import TrialSettings, run_distributed, run_in_process, start_ray, trainable


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
        mlflow_uri: the tracking URI.
        seconds: wall time of the sweep.
        train_args: ``train.py`` options that train the best config on the sweep's data and budget.
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
    mlflow_uri: str = ""
    seconds: float = 0.0
    train_args: tuple[str, ...] = ()


class ParamsOf:
    """The flattened config of a trial, as MLflow params (picklable, for the tracking callback)."""

    def __init__(self, base: Config, keys: Sequence[str]) -> None:
        self.flat, self.keys = flatten(base), tuple(keys)

    def __call__(self, trial_config: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.flat, **{k: trial_config[k] for k in self.keys}}


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


def check_capacity(workers: int, cpus: float, gpus: float) -> None:
    """A local Ray that fgi starts (this machine's CPUs and GPUs) can hold one trial.

    Raises:
        ConfigError: naming the options, before Ray starts.
    """
    have_cpus = os.cpu_count() or 1
    if workers * cpus > have_cpus:
        raise OptionError("workers_per_trial", f"{workers} workers x {cpus:g} CPUs per worker need {workers * cpus:g} CPUs; "
                          f"this machine has {have_cpus}")
    if gpus:
        import torch

        have_gpus = torch.cuda.device_count()
        if workers * gpus > have_gpus:
            raise OptionError("workers_per_trial", f"{workers} workers x {gpus:g} GPUs per worker need {workers * gpus:g} "
                              f"GPUs; this machine has {have_gpus}")


def _final_points(record: SweepRecord) -> tuple[dict[str, Any], ...]:
    """The trial configs of a final stage's runs that no earlier run stands for (none for other sweeps)."""
    from fgi.search.stages import plan_of

    return tuple(r.point() for r in plan_of(record).runs if not r.reused) if record.final_stage else ()


def _new_tuner(trainable_: Any, space: SearchSpace, record: SweepRecord, storage: str, callbacks: list,
               verbose: bool) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    concurrent = record.max_concurrent or _cluster_slots(record.workers, record.cpus_per_worker, record.gpus_per_worker)
    concurrent = min(concurrent, record.trial_count())
    searcher, param_space = build_searcher(record.search, SearcherRequest(
        space=space, metric=record.metric, mode=record.mode, seed=record.seed, startup_trials=record.startup_trials,
        concurrent=concurrent, length=record.length(space.base.train.max_steps), warm=record.warm_points,
        points=_final_points(record), seeds=record.seeds_per_trial, objectives=record.objectives,
        modes=tuple(METRIC_MODES[m] for m in record.objectives)))
    length = record.length(space.base.train.max_steps)
    scheduler = (ASHAScheduler(time_attr="step", max_t=length, grace_period=min(record.grace_steps, length),
                               reduction_factor=record.reduction_factor)
                 if record.scheduler == "asha" else FIFOScheduler())
    if record.scheduler == "asha":
        from fgi.search.asha import RungState

        callbacks = [*callbacks, RungState(scheduler)]  # Ray saves no scheduler state: the rungs travel as a callback's
    # in-process trials report checkpoints to Tune: keep the best by the metric (and Tune keeps the latest);
    # Ray Train trials keep theirs in their own runs
    checkpoints = tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=record.metric,
                                        checkpoint_score_order=record.mode, checkpoint_at_end=False)
    return tune.Tuner(
        trainable_,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=record.metric, mode=record.mode, search_alg=searcher, scheduler=scheduler,
                                    # a final stage's grid holds its runs: one sample of it
                                    num_samples=1 if record.final_stage else record.trial_count(),
                                    time_budget_s=record.time_budget,
                                    max_concurrent_trials=concurrent, trial_dirname_creator=_trial_dirname,
                                    # an in-process trial reuses the previous one's process: no new torch import
                                    reuse_actors=record.workers == 1),
        run_config=tune.RunConfig(name=record.name, storage_path=storage, callbacks=callbacks,
                                  stop={"step": length} if record.stop_step else None,
                                  failure_config=tune.FailureConfig(max_failures=record.max_failures),
                                  checkpoint_config=checkpoints, verbose=2 if verbose else 0,
                                  log_to_file=not verbose),
    )


def run_sweep(options: SweepOptions) -> SweepResult:
    """Validate everything, prepare the data once, run (or resume) the sweep, export the best config.

    Starts a local Ray unless one is initialized or ``RAY_ADDRESS`` names a cluster.

    Raises:
        ConfigError: bad options, config, data paths, sweep file (``SearchSpaceError`` for the space) or a
            local machine too small for one trial, before Ray starts or an MLflow run exists.
    """
    from fgi import tracking
    from fgi.search.console import ConsoleCallback, quiet_ray

    storage = storage_path(options.storage)
    if options.resume:
        record, space = saved_record(options, storage)
        # a sweep file written before records kept their store resolves it now, once
        uri = record.mlflow_uri or tracking.resolve_uri(options.mlflow_uri)
        tracking.check_server(uri)
        tracking.check_artifacts(uri, record.experiment)
    else:
        uri = tracking.resolve_uri(options.mlflow_uri)
        tracking.check_server(uri)  # a dead server fails here, in seconds, before data or Ray or a sweep file
        record, space = new_record(options, uri, storage)
        tracking.check_artifacts(uri, record.experiment)  # so does one that cannot store artifacts
        if options.warm_start:
            from fgi.search.warm import with_warm_start

            record = with_warm_start(record, space, options.warm_start)
        if record.final_stage:
            from fgi.search.stages import with_final_plan

            record = with_final_plan(record, space)
    import ray
    from ray import tune

    from fgi.run.worker import prepare

    if not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        check_capacity(record.workers, record.cpus_per_worker, record.gpus_per_worker)
    quiet_ray(options.verbose)
    verb = "resuming sweep" if options.resume else "sweep"
    mode = "in-process trials" if record.workers == 1 else f"Ray Train trials of {record.workers} workers"
    count = (f"{record.num_samples} configs x {record.seeds_per_trial} seeds = {record.trial_count()} trials"
             if record.seeds_per_trial > 1 and not record.final_stage else f"{record.num_samples} trials")
    print(f"{verb} {record.name}: {count} ({mode}), storage {storage}/{record.name}, "
          f"MLflow {uri} (experiment {record.experiment})", flush=True)
    if record.warm_note:
        print(record.warm_note, flush=True)
    keys = tuple(space.keys)
    if record.final_stage or record.seeds_per_trial > 1:
        from fgi.search.stages import SEED_KEY, plan_of

        keys = (*keys, SEED_KEY)  # the trial's seed travels in its Tune config
        if record.final_stage:
            print(plan_of(record).summary(), flush=True)

    prepared = prepare(space.base)
    if not options.resume:
        # before Ray starts or the MLflow parent exists: a sweep killed from here on is resumable by name
        write_sweep_file(storage, record)
    settings = TrialSettings(prepared, keys, f"{storage}/{record.name}/trials", record.workers,
                             record.cpus_per_worker, record.gpus_per_worker, record.max_failures, record.metric,
                             record.mode, record.trial_timeout)
    start_ray(options.verbose)
    path = f"{storage}/{record.name}"
    tracker = tracking.SweepTracker(uri, record.experiment, record.name, record.dataset, storage=path,
                                    metric=record.metric)
    tracker.start(record.space_text, space.base, record.tracked_settings())

    from fgi.search.disk import FULL, DiskFull, DiskGuard

    t0 = time.monotonic()
    if record.num_samples == 0:  # a final stage whose every run was measured before
        return _finish([], space, record, tracker, path, uri, time.monotonic() - t0)
    if options.resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable(settings), resume_unfinished=True, resume_errored=True)
    else:
        length = record.length(space.base.train.max_steps)  # a trial that ends before it was stopped early
        callbacks = [
            tracking.TrialCallback(uri, tracker.experiment_id, tracker.parent_run_id, record.name,
                                   ParamsOf(prepared, keys), length, record.metric, record.mode,
                                   seeds=1 if record.final_stage else record.seeds_per_trial,
                                   group_keys=tuple(space.keys),
                                   objectives={o: METRIC_MODES[o] for o in record.objectives}),
            ConsoleCallback(record.trial_count(), record.metric, record.mode, length),
            DiskGuard(path, record.max_concurrent or _slots(record)),
        ]
        tuner = _new_tuner(trainable(settings), space, record, storage, callbacks, options.verbose)
    from fgi.search.stop import SweepStopped, UserStop

    with UserStop() as stop:
        try:
            results = tuner.fit()
        except KeyboardInterrupt:
            stop.requested = stop.requested or signal.SIGINT
    if path in FULL:
        tracker.stop()
        raise DiskFull(FULL.pop(path))
    if stop.requested:
        tracker.stop()
        raise SweepStopped(stop.requested)
    return _finish(results, space, record, tracker, path, uri, time.monotonic() - t0)


def _slots(record: SweepRecord) -> int:
    """Trials the Ray cluster can run at once, by CPUs (an upper bound where GPUs are the limit)."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(int(cpus // max(record.cpus_per_worker * record.workers, 1e-9)), 1)


def best_config_header(record: SweepRecord, trial: str, row: Mapping[str, Any], final: str = "") -> str:
    """The comment header of an exported best config: its sweep, trial, metric value, budget and commit
    (``final``: a final stage's lines, ``fgi.search.stages.final_header``)."""
    steps = int(load_yaml_text(record.base_config).train.max_steps)
    stage = (f"screening stage: every trial stopped at step {record.stop_step} of its {steps}-step schedule; best "
             f"among the trials that reached it\n" if record.stop_step else "")
    warm = (f"warm start: TPE was told {len(record.warm_points)} earlier run(s) of {', '.join(record.warm_start)}\n"
            if record.warm_start else "")
    return (f"fgi best config of sweep {record.name} (dataset {record.dataset})\n"
            f"trial {trial}: {record.metric} {float(row[record.metric]):.4f} at step {int(row.get('step', 0))}; "
            f"budget {record.budget} ({steps} steps)\n{stage}{warm}{final}"
            f"git commit {git_commit()}\n"
            "method hyperparameters only: data location and compute come from train.py's flags or --budget;\n"
            "loss.rampup_fraction and optim.warmup_fraction are fractions of the run length")


def train_args(base: Config, budget: str) -> tuple[str, ...]:
    """The ``train.py`` options that give a portable best config the sweep's data and budget."""
    flags = [(flag, getattr(base.data, key.split(".")[1])) for key, flag in DATA_PATHS.items()]
    return (*(x for flag, value in flags if value for x in (flag, value)), "--budget", budget)


def _final_rows(results: Any, record: SweepRecord, length: int) -> dict[tuple[str, int], dict[str, float]]:
    """Per-image val Dice of each final-stage trial that ran to ``length``, by (candidate, seed), read from the
    ``val_rows.json`` of its last checkpoint."""
    from fgi.checkpoint import read_val_rows
    from fgi.search.params import canonical
    from fgi.search.stages import plan_of
    from fgi.search.trial import CHECKPOINT_PATH_KEY

    out: dict[tuple[str, int], dict[str, float]] = {}
    runs = [r for r in plan_of(record).runs if not r.reused]
    for result in results:
        df = result.metrics_dataframe
        if best_row(result, record.metric, record.mode, length) is None or CHECKPOINT_PATH_KEY not in df.columns:
            continue
        got = {k: canonical(v) for k, v in result.config.items()}
        run = next((r for r in runs if all(got.get(k) == canonical(v) for k, v in r.point().items())), None)
        last = df[df["step"] == df["step"].max()][CHECKPOINT_PATH_KEY].dropna()
        if run is None or last.empty:
            continue
        try:
            out[(run.candidate, run.seed)] = read_val_rows(str(last.iloc[-1]))
        except (OSError, ValueError) as exc:
            print(f"final stage: {run.candidate} seed {run.seed} left out ({exc})", file=sys.stderr)
    return out


def _finish_final(results: Any, space: SearchSpace, record: SweepRecord, tracker: Any,
                  common: dict[str, Any]) -> SweepResult:
    """The final stage's end: choose on the per-image val Dice, export, log the table to the parent run."""
    from fgi.search.stages import choice_table, choose, final_header, plan_of

    length = space.base.train.max_steps
    plan, rows = plan_of(record), _final_rows(results, record, length)
    try:
        choice = choose(plan, rows, record.seed)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        tracker.finish(None, None, None, failed=True)
        return SweepResult(best_metrics=None, best_config=None, best_config_path=None, best_trial=None,
                           importances={}, **common)
    values = next(c["values"] for c in plan.candidates if c["name"] == choice.exported)
    best_cfg = space.apply(values)
    row = {record.metric: choice.scores[choice.exported], "step": length}
    header = best_config_header(record, f"{choice.exported} (mean of its seeds)", row, final_header(record, choice))
    text = portable_config_text(best_cfg, space.keys, header)
    table = choice_table(plan, choice, rows)
    print(table, end="", flush=True)
    tracker.finish(row, text, None, texts={"final_stage.md": table},
                   metrics={"final_difference": choice.difference, "final_ci_low": choice.low,
                            "final_ci_high": choice.high, "final_exported_winner": float(choice.exported != "published")})
    out = Path(record.best_dir).expanduser().resolve() / f"{record.dataset}.yaml"
    atomic_write_text(out, text)
    return SweepResult(best_metrics=row, best_config=best_cfg, best_config_path=out, best_trial=choice.exported,
                       importances={}, **common)


def _finish(results: Any, space: SearchSpace, record: SweepRecord, tracker: Any, path: str, uri: str,
            seconds: float) -> SweepResult:
    length = record.length(space.base.train.max_steps)
    scored = [(r, row) for r in results if (row := best_row(r, record.metric, record.mode, length)) is not None]
    failed = sum(1 for r in results if r.error is not None)
    common = {"name": record.name, "path": path, "trials": len(results), "failed": failed, "metric": record.metric,
              "experiment": record.experiment, "parent_run_id": tracker.parent_run_id, "mlflow_uri": uri,
              "seconds": seconds, "train_args": train_args(space.base, record.budget)}
    if record.final_stage:
        return _finish_final(results, space, record, tracker, common)
    if not scored:
        tracker.finish(None, None, None, failed=True)
        return SweepResult(best_metrics=None, best_config=None, best_config_path=None, best_trial=None,
                           importances={}, **common)
    groups, extra, lines, front = [], {}, "", None
    if record.seeds_per_trial > 1:
        from fgi.search.seeds import grouped_rows

        scored, groups = grouped_rows(scored, space.keys, record.seeds_per_trial, record.metric)
    if record.objectives:
        from fgi.search.front import finish_front

        def config_text(result: Any, report: Mapping[str, Any], header: str) -> str:
            name = Path(result.path).name.removeprefix("trial_")
            return portable_config_text(space.apply(space.values_of(result.config)), space.keys,
                                        best_config_header(record, name, report, header))

        front = finish_front(results, record.objectives, {o: METRIC_MODES[o] for o in record.objectives}, length,
                             tracker, config_text)
    if not scored or (record.objectives and front is None):
        print("no trial (or seed group) ran to the end with every objective; no best config", file=sys.stderr)
        tracker.finish(None, None, None, failed=True)
        return SweepResult(best_metrics=None, best_config=None, best_config_path=None, best_trial=None,
                           importances={}, **common)
    sign = 1.0 if record.mode == "max" else -1.0
    best, row = max(scored, key=lambda item: sign * float(item[1][record.metric]))
    if front is not None:
        best, row, lines, texts = front
        extra = {"texts": texts}
    best_cfg = space.apply(space.values_of(best.config))
    points = [(space.values_of(r.config), float(r_row[record.metric])) for r, r_row in scored]
    try:
        imps = importances(space, points, record.mode, record.seed)
    except (ValueError, RuntimeError) as exc:
        print(f"parameter importances skipped: {exc}", file=sys.stderr)
        imps = {}
    trial = Path(best.path).name.removeprefix("trial_")
    if groups:
        from fgi.search.seeds import group_header, group_table

        chosen = next(g for g in groups if g.members[0][0] == row["trial_id"])
        trial, lines = f"{trial} (group {chosen.group}, mean of its seeds)", group_header(groups, chosen, record.metric)
        extra = {"texts": {"seed_groups.md": group_table(groups, record.metric)}}
    text = portable_config_text(best_cfg, space.keys, best_config_header(record, trial, row, lines))
    tracker.finish(row, text, imps, **extra)
    out = Path(record.best_dir).expanduser().resolve() / f"{record.dataset}.yaml"
    atomic_write_text(out, text)
    return SweepResult(best_metrics=row, best_config=best_cfg, best_config_path=out, best_trial=trial,
                       importances=imps, **common)


__all__ = [
    "DEFAULT_TRIAL_TIMEOUT", "METRIC_MODES", "SCHEDULERS", "SEARCHERS", "SWEEP_FILE", "ParamsOf", "SweepOptions",
    "SweepRecord", "SweepResult", "TrialSettings", "best_config_header", "check_capacity", "importances",
    "run_distributed", "run_in_process", "run_sweep",
]
