"""What a sweep runs: the options a caller gives (``SweepOptions``), the record saved with the sweep
(``SweepRecord``, the file ``<storage>/<name>/fgi_sweep.json`` that resume reads back), and how options
become a record and a validated search space.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgi import budgets
from fgi.config import Config, ConfigError, dump_yaml, from_dict, load_yaml, load_yaml_text, override
from fgi.fields import OptionError
from fgi.files import atomic_write_text
from fgi.paths import fgi_home
from fgi.search.checks import (
    DATA_PATHS,
    METRIC_MODES,
    check_data_paths,
    check_name,
    check_objectives,
    one_of,
    positive,
)
from fgi.search.searchers import MODEL_BASED, SEARCHERS
from fgi.search.space import SearchSpace, dataset_space, load_space, space_from_text

SWEEP_FILE = "fgi_sweep.json"
SCHEDULERS = ("asha", "none")  # ASHA early stopping, or every trial runs to the end
DEFAULT_BUDGET = {"synthetic": "cpu"}  # other datasets default to "full"
# per budget: trials, ASHA grace period in evaluations, ASHA reduction factor
SEARCH_DEFAULTS = {"smoke": (3, 1, 2), "cpu": (10, 3, 2), "laptop": (10, 2, 2), "full": (40, 2, 3)}
# Optuna's TPE samples at random until this many trials have finished. Its own default (10) would leave a
# 10-trial sweep random from start to end, so a sweep models after a third of its trials, at most Optuna's 10.
TPE_STARTUP_SHARE = 3
TPE_STARTUP_MAX = 10
# seconds a trial may go without an optimizer step or a report before its watchdog ends it (fgi.search.watchdog);
# generous because the time to the first step (data loading, model build, restore) counts too
DEFAULT_TRIAL_TIMEOUT = 1800.0


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep runs: validated on construction (errors name the option).

    Args:
        dataset: dataset to search on; its shipped space is used unless ``space`` is given.
        config: base config YAML; default the published configuration of ``dataset``.
        space: search-space YAML of the user's.
        budget: compute preset (``fgi.budgets``); default cpu for synthetic, full otherwise.
        num_samples: trials; default by budget (``SEARCH_DEFAULTS``).
        max_concurrent: trials at once; default as many as the cluster's CPUs or GPUs hold.
        workers_per_trial: data-parallel Ray Train workers per trial.
        cpus_per_worker: CPUs per worker.
        gpus_per_worker: GPUs per worker; 0 trains on CPU (gloo).
        search: one of ``SEARCHERS``.
        startup_trials: finished trials before TPE models the results (random proposals until then); default
            ``default_startup_trials(num_samples)``. Only for ``search="tpe"``.
        scheduler: one of ``SCHEDULERS``.
        max_steps: optimizer steps per trial; default the budget's.
        grace_steps: steps before ASHA may stop a trial; default a budget-dependent number of evaluations.
        stop_step: a screening stage: every trial trains on the full ``max_steps`` schedule (learning rate,
            ramp-ups) but stops after this step, so its value is the early point of a full run, never the end
            of a compressed one; default run to ``max_steps``.
        warm_start: earlier runs told to TPE before it proposes: folders of protocol records and
            ``mlflow:<experiment>`` names (``fgi.search.warm``), each at the sweep's own stop step.
        final_stage: makes the sweep a staged search's final stage (``fgi.search.stages``): where the screening
            runs are (the kinds ``warm_start`` reads); the top ``top_k`` configs at ``rank_step`` and the
            published point each run once per ``stage_seeds`` seed to the end, with no early stopping.
        rank_step: the step the screening runs are ranked at (their stop step); needed with ``final_stage``.
        top_k: candidates of the final stage besides the published point.
        stage_seeds: the final stage's seeds (at least two: the choice is tested against the seed noise); default
            ``seeds_per_trial`` seeds from ``seed`` when that is 2 or more, else 0 and 1.
        seeds_per_trial: runs of every proposed config, with seeds ``seed``, ``seed + 1``, ...; the config's value
            is their mean (``fgi.groups``), told to TPE once all have ended. Not with ASHA, which would stop
            seeds of one config apart.
        metric: validation metric to optimize (``METRIC_MODES``); with ``objectives``, the first of them.
        objectives: two or more metrics to optimize at once (Optuna multi-objective TPE or NSGA-II); the sweep
            keeps their Pareto front and exports its best ``metric`` point (``fgi best --pick`` takes others).
        root: raw dataset folder (``data.root``); default the config's.
        storage: local folder or URI for Tune state and checkpoints; default ``$FGI_HOME/ray_results``.
        name: sweep name; default ``fgi-<dataset>-<budget>-<time>``.
        resume: finish sweep ``name`` (default the latest ``fgi-<dataset>-*``) with its saved settings.
        mlflow_uri: tracking URI; default ``MLFLOW_TRACKING_URI``, else SQLite in ``$FGI_HOME``.
        experiment: MLflow experiment; default ``fgi-<dataset>``.
        time_budget: seconds after which no new trial starts.
        seed: seed of the TPE sampler and ``train.seed``; default the config's.
        max_failures: retries of a failed trial or worker group.
        trial_timeout: seconds a trial may go without an optimizer step or a report before its watchdog
            ends its process (a failure, retried as ``max_failures`` says); 0 disables the watchdog.
        best_dir: folder of the local ``<dataset>.yaml`` best config; default ``$FGI_HOME/best_configs``.
        verbose: show Ray's and Tune's own console output.
    """

    dataset: str
    config: str | None = None
    space: str | None = None
    budget: str | None = None
    num_samples: int | None = None
    max_concurrent: int | None = None
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    search: str = "tpe"
    startup_trials: int | None = None
    scheduler: str = "asha"
    max_steps: int | None = None
    grace_steps: int | None = None
    stop_step: int | None = None
    warm_start: tuple[str, ...] = ()
    final_stage: tuple[str, ...] = ()
    rank_step: int | None = None
    top_k: int = 1
    stage_seeds: tuple[int, ...] = ()
    seeds_per_trial: int = 1
    metric: str = "val_dice"
    objectives: tuple[str, ...] = ()
    root: str | None = None
    storage: str | None = None
    name: str | None = None
    resume: bool = False
    mlflow_uri: str | None = None
    experiment: str | None = None
    time_budget: float | None = None
    seed: int | None = None
    max_failures: int = 2
    trial_timeout: float = DEFAULT_TRIAL_TIMEOUT
    best_dir: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("num_samples", "max_concurrent", "workers_per_trial", "max_steps", "grace_steps", "stop_step",
                     "cpus_per_worker", "time_budget", "startup_trials", "seeds_per_trial"):
            positive(name, getattr(self, name))
        for name in ("max_failures", "gpus_per_worker", "trial_timeout"):
            positive(name, getattr(self, name), allow_zero=True)
        if not math.isfinite(self.trial_timeout):
            raise OptionError("trial_timeout", f"must be a finite number of seconds (0 disables), got {self.trial_timeout}")
        if self.budget is not None:
            budgets.budget_overrides(self.budget)
        one_of("search", self.search, SEARCHERS)
        one_of("scheduler", self.scheduler, SCHEDULERS)
        if self.startup_trials is not None and self.search not in MODEL_BASED:
            raise OptionError("startup_trials", f"only for search 'tpe', not {self.search!r}")
        if self.warm_start and self.search not in MODEL_BASED:
            raise OptionError("warm_start", f"only for search 'tpe', not {self.search!r} "
                              "(random search learns nothing from earlier runs)")
        one_of("metric", self.metric, sorted(METRIC_MODES))
        if self.final_stage:
            self._check_final_stage()
        elif self.seeds_per_trial > 1:
            self._check_seed_groups()
        check_objectives(self.objectives, self.metric, scheduler=self.scheduler, search=self.search,
                         warm_start=bool(self.warm_start), final_stage=bool(self.final_stage),
                         seeds_per_trial=self.seeds_per_trial)
        if self.name is not None:
            check_name(self.name)


    def _check_seed_groups(self) -> None:
        if self.scheduler != "none":
            raise OptionError("seeds_per_trial", f"needs scheduler 'none', not {self.scheduler!r}: early stopping "
                                                 "would stop the seeds of one config apart (use stop_step to screen)")
        if self.search not in MODEL_BASED:
            raise OptionError("seeds_per_trial", f"only for search 'tpe', not {self.search!r}")

    def final_seeds(self, first: int) -> tuple[int, ...]:
        """The final stage's seeds: ``stage_seeds``, else ``seeds_per_trial`` seeds from ``first`` when that is
        2 or more, else 0 and 1."""
        if self.stage_seeds:
            return tuple(self.stage_seeds)
        return tuple(range(first, first + self.seeds_per_trial)) if self.seeds_per_trial > 1 else (0, 1)

    def _check_final_stage(self) -> None:
        if self.rank_step is None:
            raise OptionError("rank_step", "the final stage ranks the screening runs at this step (their stop step)")
        positive("rank_step", self.rank_step)
        positive("top_k", self.top_k)
        if self.stage_seeds and len(set(self.stage_seeds)) < 2:
            raise OptionError("stage_seeds", f"at least two different seeds, got {list(self.stage_seeds)} (the "
                                             "final choice is tested against the seed noise)")
        if self.stage_seeds and self.seeds_per_trial > 1 and len(self.stage_seeds) != self.seeds_per_trial:
            raise OptionError("seeds_per_trial", f"{self.seeds_per_trial} seeds, but stage_seeds lists "
                                                 f"{len(self.stage_seeds)}; give one of them")
        if self.metric != "val_dice":
            raise OptionError("metric", f"the final stage compares per-image val Dice, not {self.metric}")
        # the final stage decides these itself: one full-length trial per candidate and seed, told to no searcher
        for name in ("num_samples", "stop_step", "startup_trials"):
            if getattr(self, name) is not None:
                raise OptionError(name, "not with final_stage (one full-length trial per candidate and seed)")
        if self.warm_start:
            raise OptionError("warm_start", "not with final_stage (it reads its sources itself)")


def default_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: a third of the sweep, at least 1, at most Optuna's 10."""
    return max(1, min(TPE_STARTUP_MAX, num_samples // TPE_STARTUP_SHARE))


@dataclass(frozen=True)
class SweepRecord:
    """A sweep's settings as saved in ``fgi_sweep.json`` (the keys of files written before it too)."""

    dataset: str
    budget: str
    name: str
    base_config: str  # YAML of the unprepared base config
    space_path: str  # where the space came from (for messages)
    space_text: str  # self-contained YAML of the space
    num_samples: int
    max_concurrent: int | None
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    search: str
    scheduler: str
    grace_steps: int
    reduction_factor: int
    metric: str
    mode: str
    time_budget: float | None
    seed: int
    max_failures: int
    experiment: str
    best_dir: str
    mlflow_uri: str = ""  # "" in files written before it was recorded: resolved as a new sweep would
    storage: str = ""
    trial_timeout: float = DEFAULT_TRIAL_TIMEOUT  # files written before the watchdog get its default
    startup_trials: int = TPE_STARTUP_MAX  # files written before it ran TPE with Optuna's default
    stop_step: int = 0  # 0: trials run to train.max_steps (files written before screening stages)
    warm_start: tuple[str, ...] = ()  # sources of warm points (files written before warm starts: none)
    warm_points: tuple[dict[str, Any], ...] = ()  # WarmPoint.to_dict of each, computed once when the sweep began
    warm_note: str = ""  # what the warm start told and left out
    final_stage: tuple[str, ...] = ()  # screening sources of a final stage (none: not a final stage)
    rank_step: int = 0
    top_k: int = 0
    stage_seeds: tuple[int, ...] = ()
    seeds_per_trial: int = 1  # runs per proposed config (files written before seed groups: one)
    objectives: tuple[str, ...] = ()  # several metrics at once (none: the one metric)
    final_candidates: tuple[dict[str, Any], ...] = ()  # fgi.search.stages.FinalPlan.candidates
    final_runs: tuple[dict[str, Any], ...] = ()  # FinalRun.to_dict of each run, reused ones with their rows

    def length(self, max_steps: int) -> int:
        """Steps a trial of this sweep runs unless stopped early: the stop step, else ``max_steps``."""
        return min(self.stop_step, max_steps) if self.stop_step else max_steps

    def trial_count(self) -> int:
        """Tune trials of the sweep: every proposed config once per seed (a final stage: one per run)."""
        return self.num_samples * (1 if self.final_stage else self.seeds_per_trial)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str) -> SweepRecord:
        """Read a sweep file.

        Raises:
            ConfigError: naming the file, for bad JSON or a missing setting.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in data] if isinstance(data, dict) else required
        if missing:
            raise ConfigError(f"{source}: missing sweep settings {missing}")
        values = {f.name: data[f.name] for f in fields if f.name in data}
        for name in ("warm_start", "warm_points", "final_stage", "stage_seeds", "final_candidates", "final_runs",
                     "objectives"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def tracked_settings(self) -> dict[str, Any]:
        """The settings logged as ``sweep.*`` params of the parent run."""
        keys = ("budget", "num_samples", "workers", "cpus_per_worker", "gpus_per_worker", "search", "scheduler",
                "grace_steps", "metric", "seed", "max_failures", "trial_timeout", "startup_trials", "stop_step",
                "seeds_per_trial")
        stage = "final" if self.final_stage else "screening" if self.stop_step else "single"
        final = ({"final_stage": ",".join(self.final_stage), "rank_step": self.rank_step, "top_k": self.top_k,
                  "stage_seeds": ",".join(map(str, self.stage_seeds)),
                  "reused_runs": sum(1 for r in self.final_runs if r.get("reused"))} if self.final_stage else {})
        return {**{k: getattr(self, k) for k in keys}, "objectives": ",".join(self.objectives) or self.metric,
                "warm_start": ",".join(self.warm_start) or "none",
                "warm_points": len(self.warm_points), "stage": stage, **final}



def latest_sweep(storage: str, dataset: str) -> str:
    """The newest ``fgi-<dataset>-*`` sweep with a sweep file in a local ``storage``."""
    if "://" in storage:
        raise OptionError("resume", "give the sweep's name when its storage is a URI")
    found = sorted(Path(storage).glob(f"fgi-{dataset}-*/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise OptionError("resume", f"no fgi-{dataset}-* sweep in {storage}")
    return found[-1].parent.name


def write_sweep_file(storage: str, record: SweepRecord) -> None:
    """Write ``<storage>/<name>/fgi_sweep.json`` (atomically on local storage)."""
    import pyarrow.fs

    text = record.to_json()
    if "://" in storage:
        fs, root = pyarrow.fs.FileSystem.from_uri(storage)
        with fs.open_output_stream(f"{root}/{record.name}/{SWEEP_FILE}") as fh:
            fh.write(text.encode())
    else:
        atomic_write_text(Path(storage) / record.name / SWEEP_FILE, text)


def read_sweep_file(storage: str, name: str) -> SweepRecord:
    """The record of sweep ``name`` under ``storage`` (a local folder or URI)."""
    import pyarrow.fs

    if "://" in storage:
        fs, root = pyarrow.fs.FileSystem.from_uri(storage)
        with fs.open_input_stream(f"{root}/{name}/{SWEEP_FILE}") as fh:
            return SweepRecord.from_json(fh.read().decode(), f"{storage}/{name}/{SWEEP_FILE}")
    p = Path(storage) / name / SWEEP_FILE
    if not p.is_file():
        raise OptionError("resume", f"{p} not found; is {name!r} a sweep in storage {storage}?")
    return SweepRecord.from_json(p.read_text(), str(p))


def _base_config(options: SweepOptions, budget: str) -> Config:
    if options.config:
        cfg = load_yaml(options.config)
        if cfg.data.dataset != options.dataset:
            raise OptionError("config", f"{options.config} is for dataset {cfg.data.dataset!r}, "
                              f"not {options.dataset!r}")
    else:
        cfg = from_dict({"data": {"dataset": options.dataset}})
    updates: dict[str, Any] = dict(budgets.budget_overrides(budget))
    if options.seed is not None:
        updates["train.seed"] = options.seed
    if options.max_steps is not None:
        updates["train.max_steps"] = options.max_steps
    if options.root is not None:
        updates["data.root"] = options.root
    cfg = override(cfg, updates)
    check_data_paths(cfg)
    return cfg


def default_best_dir(value: str | None) -> str:
    """The absolute folder of best configs: ``value``, else ``$FGI_HOME/best_configs`` (survives ``ray job submit``)."""
    return str(Path(value).expanduser().resolve()) if value else str(fgi_home() / "best_configs")


def new_record(options: SweepOptions, mlflow_uri: str = "", storage: str = "") -> tuple[SweepRecord, SearchSpace]:
    """The record of a new sweep and its validated space (the space file is read and parsed once).

    Args:
        options: the sweep options.
        mlflow_uri: the resolved tracking URI, recorded for resume.
        storage: the resolved storage, recorded for resume.

    Raises:
        ConfigError: a bad base config; ``SearchSpaceError`` for the space.
    """
    budget = options.budget or DEFAULT_BUDGET.get(options.dataset, "full")
    base = _base_config(options, budget)
    space = load_space(options.space, base) if options.space else dataset_space(options.dataset, base)
    samples, grace_evals, factor = SEARCH_DEFAULTS[budget]
    num_samples = options.num_samples or samples
    for what, step in (("stop step", options.stop_step), ("rank step", options.rank_step)):
        if step is not None and step >= base.train.max_steps:
            raise ConfigError(f"{what} {step}: must be below the trials' {base.train.max_steps} steps "
                              f"(a screening stage stops inside the full schedule)")
        if step is not None and step % base.train.eval_every:
            raise ConfigError(f"{what} {step}: must be a multiple of train.eval_every "
                              f"{base.train.eval_every} (a trial is measured, and stopped, at its evaluations)")
    record = SweepRecord(
        dataset=options.dataset, budget=budget,
        name=options.name or f"fgi-{options.dataset}-{budget}-{time.strftime('%Y%m%d-%H%M%S')}",
        base_config=dump_yaml(base), space_path=space.source, space_text=space.text,
        num_samples=num_samples, max_concurrent=options.max_concurrent,
        workers=options.workers_per_trial, cpus_per_worker=options.cpus_per_worker,
        gpus_per_worker=options.gpus_per_worker, search=options.search, scheduler=options.scheduler,
        grace_steps=options.grace_steps or grace_evals * base.train.eval_every, reduction_factor=factor,
        metric=options.metric, mode=METRIC_MODES[options.metric], time_budget=options.time_budget,
        seed=base.train.seed, max_failures=options.max_failures,
        experiment=options.experiment or f"fgi-{options.dataset}", best_dir=default_best_dir(options.best_dir),
        mlflow_uri=mlflow_uri, storage=storage, trial_timeout=options.trial_timeout,
        startup_trials=options.startup_trials or default_startup_trials(num_samples),
        stop_step=options.stop_step or 0, seeds_per_trial=options.seeds_per_trial, objectives=tuple(options.objectives))
    if options.final_stage:
        record = dataclasses.replace(record, search="points", scheduler="none", final_stage=tuple(options.final_stage),
                                     rank_step=int(options.rank_step or 0), top_k=options.top_k,
                                     stage_seeds=options.final_seeds(base.train.seed))
    return record, space


def saved_record(options: SweepOptions, storage: str) -> tuple[SweepRecord, SearchSpace]:
    """The record and space of the sweep to resume: ``options.name``, else the latest of the dataset."""
    name = options.name or latest_sweep(storage, options.dataset)
    record = read_sweep_file(storage, name)
    source = f"{storage}/{name}/{SWEEP_FILE}"
    given = {"mlflow_uri": (options.mlflow_uri, record.mlflow_uri), "experiment": (options.experiment, record.experiment),
             "storage": (options.storage and storage, record.storage)}
    for option, (value, saved) in given.items():
        if value and saved and value != saved:
            raise OptionError(option, f"sweep {name} was started with {saved!r}, not {value!r}; resume it with "
                              f"its own value (or start a new sweep under another name)")
    base = load_yaml_text(record.base_config, source)
    return record, space_from_text(record.space_text, base, f"{source} (space of {record.space_path})")


__all__ = [
    "DATA_PATHS", "DEFAULT_BUDGET", "DEFAULT_TRIAL_TIMEOUT", "METRIC_MODES", "SCHEDULERS", "SEARCHERS", "SEARCH_DEFAULTS", "SWEEP_FILE", "SweepOptions",
    "SweepRecord", "check_data_paths", "check_name", "default_best_dir", "default_startup_trials", "latest_sweep", "new_record", "read_sweep_file", "saved_record", "write_sweep_file",
]
