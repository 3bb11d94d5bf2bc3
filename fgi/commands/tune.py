"""``fgi tune`` / ``tune.py``: a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA), logged to MLflow."""

from __future__ import annotations

import argparse
import shlex
import sys

from fgi import budgets
from fgi.commands import error_line
from fgi.config import ConfigError
from fgi.data.errors import DataError
from fgi.datasets import DATASET_NAMES
from fgi.search.stop import DiskFull, SweepStopped
from fgi.search.sweep import (
    DEFAULT_TRIAL_TIMEOUT,
    METRIC_MODES,
    SCHEDULERS,
    SEARCHERS,
    SweepOptions,
    SweepResult,
    run_sweep,
)

DISK_FULL_EXIT = 75  # EX_TEMPFAIL (sysexits.h): try again once there is room
# library options whose flag here is not "--" plus the option's name
TUNE_FLAGS = {"workers": "--workers-per-trial"}

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi tune``; each maps to the ``SweepOptions`` field of the same name."""
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset to search on")
    parser.add_argument("--config", default=None, help="base config YAML (default: the published configuration)")
    parser.add_argument("--root", "--data-root", dest="root", default=None,
                        help="raw dataset folder (data.root; default: the config's)")
    parser.add_argument("--space", default=None,
                        help="search-space YAML (default: the shipped fgi/search_spaces/<dataset>.yaml)")
    parser.add_argument("--budget", default=None, choices=budgets.budget_names(),
                        help="compute preset: image size, widths, steps, evaluation interval (default: cpu for "
                             "synthetic, full otherwise)")
    parser.add_argument("--num-samples", type=int, default=None, help="trials (default by budget: smoke 3, cpu 10, laptop 10, full 40)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once (default: as many as the cluster's CPUs or GPUs hold)")
    parser.add_argument("--workers-per-trial", type=int, default=1,
                        help="workers per trial: 1 trains in the Tune trial's own process (fast start); 2 or more "
                             "run a Ray Train DDP run per trial")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker; 0 trains on CPU (gloo)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker")
    parser.add_argument("--search", default="tpe", choices=tuple(SEARCHERS),
                        help="Optuna TPE (multivariate, seeded), Optuna NSGA-II (seeded; for several --metric), "
                             "or Ray Tune random search over the same space")
    parser.add_argument("--startup-trials", type=int, default=None,
                        help="finished trials before TPE models the results; random proposals until then "
                             "(default: a third of --num-samples, 1 to 10; kept by --resume)")
    parser.add_argument("--scheduler", default="asha", choices=SCHEDULERS, help="early stopping of weak trials")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps per trial (default: the budget's)")
    parser.add_argument("--grace-steps", type=int, default=None,
                        help="steps before ASHA may stop a trial (default: a budget-dependent number of evaluations)")
    parser.add_argument("--stop-step", type=int, default=None,
                        help="screen: each trial keeps its full --max-steps schedule (learning rate, ramp-ups) but "
                             "stops after this step; best and TPE count only trials that reached it (kept by --resume)")
    parser.add_argument("--warm-start", nargs="+", default=(), metavar="SOURCE",
                        help="tell TPE earlier runs of the same method before it proposes: folders of protocol "
                             "records and mlflow:<experiment> (trials of earlier sweeps on --mlflow-uri); each run "
                             "is told its value at this sweep's stop step (kept by --resume)")
    parser.add_argument("--final-stage", nargs="+", default=(), metavar="SOURCE",
                        help="make this sweep a staged search's final stage: rank the screening runs of these "
                             "sources (as --warm-start reads them) at --rank-step, then run the --top-k best and the "
                             "published point with each --stage-seeds seed to the end; export the winner only if "
                             "it beats the published point beyond the seed noise on val, else the published point")
    parser.add_argument("--rank-step", type=int, default=None,
                        help="with --final-stage: the step the screening runs are ranked at (their --stop-step)")
    parser.add_argument("--top-k", type=int, default=1, help="with --final-stage: candidates besides the published point")
    parser.add_argument("--stage-seeds", nargs="+", type=int, default=(), metavar="SEED",
                        help="with --final-stage: seeds of every candidate's runs (at least two; default "
                             "--seeds-per-trial seeds from --seed when that is 2 or more, else 0 1)")
    parser.add_argument("--seeds-per-trial", type=int, default=1, metavar="N",
                        help="run every proposed config with N seeds (--seed, --seed + 1, ...): its value is their "
                             "mean, told to TPE once all ended, their spread logged; needs --scheduler none "
                             "(--num-samples counts configs)")
    parser.add_argument("--metric", action="append", default=None, choices=sorted(METRIC_MODES),
                        help="metric to optimize (Dice and IoU up; HD95, ASD and the inference cost infer_ms and "
                             "infer_mparams down; default val_dice); give it twice or more for a multi-objective "
                             "sweep (--search tpe or nsga2, --scheduler none) whose Pareto front is logged")
    parser.add_argument("--storage", default=None,
                        help="local folder or URI for Tune state and checkpoints (default: $FGI_HOME/ray_results); "
                             "shared storage on a multi-node cluster")
    parser.add_argument("--name", default=None, help="sweep name (default: fgi-<dataset>-<budget>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="finish sweep --name (default: the latest fgi-<dataset>-* sweep in --storage)")
    parser.add_argument("--mlflow-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite in $FGI_HOME)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: fgi-<dataset>)")
    parser.add_argument("--time-budget", type=float, default=None, help="stop starting trials after this many seconds")
    parser.add_argument("--seed", type=int, default=None, help="seed of the TPE sampler and of train.seed (default: the config's)")
    parser.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial or worker group")
    parser.add_argument("--trial-timeout", type=float, default=DEFAULT_TRIAL_TIMEOUT,
                        help="seconds a trial may go without an optimizer step or a report (the time to its first "
                             "step included) before it is ended as failed, and retried per --max-failures, instead "
                             f"of hanging; 0 disables (default: {DEFAULT_TRIAL_TIMEOUT:g}; kept by --resume)")
    parser.add_argument("--best-dir", default=None,
                        help="folder for the <dataset>.yaml best config (default: $FGI_HOME/best_configs, absolute)")
    parser.add_argument("--verbose", action="store_true", help="show Ray's and Tune's own console output")


def options_of(args: argparse.Namespace) -> SweepOptions:
    """The typed sweep options of parsed arguments.

    Raises:
        ConfigError: naming the option, for a bad value.
    """
    return SweepOptions(
        dataset=args.dataset, config=args.config, space=args.space, budget=args.budget, num_samples=args.num_samples,
        max_concurrent=args.max_concurrent, workers_per_trial=args.workers_per_trial,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker, search=args.search,
        startup_trials=args.startup_trials, scheduler=args.scheduler, max_steps=args.max_steps, grace_steps=args.grace_steps, stop_step=args.stop_step,
        warm_start=tuple(args.warm_start), final_stage=tuple(args.final_stage), rank_step=args.rank_step,
        top_k=args.top_k, stage_seeds=tuple(args.stage_seeds), seeds_per_trial=args.seeds_per_trial,
        metric=(args.metric or ['val_dice'])[0], objectives=tuple(args.metric) if len(args.metric or ()) > 1 else (), root=args.root,
        storage=args.storage, name=args.name, resume=args.resume, mlflow_uri=args.mlflow_uri,
        experiment=args.experiment, time_budget=args.time_budget, seed=args.seed, max_failures=args.max_failures,
        trial_timeout=args.trial_timeout, best_dir=args.best_dir, verbose=args.verbose)


def summary(result: SweepResult) -> list[str]:
    """The sweep's closing lines: the best trial and its metric, where the best config is, what to run next."""
    if result.best_metrics is None:
        return [f"no trial reported {result.metric}; {result.failed} of {result.trials} trials failed "
                f"(see the MLflow runs and {result.path})"]
    best = result.best_metrics
    config = shlex.quote(str(result.best_config_path))
    return [
        f"done in {result.seconds:.0f} s: {result.trials} trials, {result.failed} failed",
        f"best trial {result.best_trial}: {result.metric} {best[result.metric]:.4f} at step {int(best.get('step', 0))}",
        f"best config: {result.best_config_path}",
        f"MLflow parent run: {result.parent_run_id} (experiment {result.experiment})",
        "next:",
        f"  mlflow ui --backend-store-uri {shlex.quote(result.mlflow_uri)}",
        f"  python train.py --config {config} {shlex.join(result.train_args)}".rstrip(),
    ]


def report(result: SweepResult) -> int:
    """Print how a sweep ended; 0 when some trial reported the metric, else 1."""
    lines = summary(result)
    print("\n".join(lines), file=sys.stdout if result.best_metrics is not None else sys.stderr)
    return 0 if result.best_metrics is not None else 1


def _resume_command(args: argparse.Namespace) -> str:
    """The command that resumes the sweep ``args`` started."""
    resume = ["python", "tune.py", "--dataset", args.dataset, "--resume"]
    resume += ["--name", args.name] if args.name else []
    resume += ["--storage", args.storage] if args.storage else []
    return shlex.join(resume)


def main(args: argparse.Namespace) -> int:
    """Run the sweep; bad settings or data print one line naming the option, key or file and exit 2."""
    try:
        return report(run_sweep(options_of(args)))
    except SweepStopped as stop:
        print(f"stopped by {stop} (the trials' MLflow runs and the sweep's end as KILLED); resume with: "
              f"{_resume_command(args)}", file=sys.stderr)
        return 128 + stop.signum
    except DiskFull as full:
        print(f"stopped: {full}; the sweep's state is saved (the trials' MLflow runs end as KILLED). Free space, "
              f"then resume with: {_resume_command(args)}", file=sys.stderr)
        return DISK_FULL_EXIT
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(error_line(exc, TUNE_FLAGS), file=sys.stderr)
        return 2
