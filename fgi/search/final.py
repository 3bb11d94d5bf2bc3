"""Final training of a configuration on Ray Train, scoring on the test split, and model registration.

``final_config`` resolves what to train (a YAML file or the config stored on an MLflow run, with an
optional budget and step count on top); ``train_final`` trains it, scores the checkpoint with the best
validation Dice on the test split, logs everything to one MLflow run and registers the model.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgi import budgets
from fgi.config import Config, ConfigError, load_yaml, load_yaml_text, override
from fgi.data.cache import load_manifest, resolve_cache_dir
from fgi.datasets import find_fixations
from fgi.fields import OptionError
from fgi.paths import storage_path
from fgi.search.settings import check_data_paths
from fgi.search.trial import start_ray

ALIAS = re.compile(r"[\w-]{1,255}")  # MLflow's alias names; "latest" and v<N> are reserved
BUDGET_TAG = "fgi.budget"  # model version tag: the --budget it was trained under, "none" for the config as is
STEPS_TAG = "fgi.max_steps"  # model version tag: its train.max_steps


@dataclass(frozen=True)
class FinalResult:
    """A finished final training.

    Args:
        name: the Ray Train run name.
        run_id: the MLflow run.
        model: the registered model name.
        version: its new version.
        aliases: the aliases now pointing at it.
        test_metrics: ``test_*`` metrics of the best checkpoint; empty when the data has no test split.
        best_metrics: the report of the best checkpoint (``val_*``, ``step``).
        checkpoint: the best checkpoint's path (local folder or URI).
    """

    name: str
    run_id: str
    model: str
    version: str
    test_metrics: dict[str, float]
    best_metrics: dict[str, Any]
    checkpoint: str
    aliases: tuple[str, ...] = ()

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


def final_config(*, config: str | os.PathLike | None = None, run_id: str | None = None, mlflow_uri: str | None = None,
                 budget: str | None = None, max_steps: int | None = None, data_root: str | None = None,
                 fixations: str | None = None, split_dir: str | None = None) -> tuple[Config, str]:
    """The config to train and its source, from a YAML file or an MLflow run (exactly one).

    A portable best config holds the method only; the budget gives the compute and the data options
    say where the data is.

    Args:
        config: config YAML, e.g. ``best_configs/<dataset>.yaml``.
        run_id: MLflow run whose ``best_config.yaml`` (sweep) or ``config.yaml`` (trial, final run) to train.
        mlflow_uri: tracking URI for ``run_id``.
        budget: compute preset applied on top (``fgi.budgets``).
        max_steps: ``train.max_steps`` on top.
        data_root: ``data.root`` on top.
        fixations: ``data.fixations`` on top; without it (and without one in the config) the dataset's
            GazeMedSeg CSV is looked for beside ``data.root`` (``fgi.datasets.find_fixations``).
        split_dir: ``data.split_dir`` on top.

    Raises:
        ConfigError: a missing or invalid config, a bad budget or step count, or a data path that does not exist.
        LookupError: a run without a stored config.
    """
    if (config is None) == (run_id is None):
        raise ConfigError("give exactly one of --config and --from-mlflow")
    if config is not None:
        cfg, source = load_yaml(config), str(Path(config).resolve())
    else:
        from fgi import tracking

        text = tracking.config_of_run(tracking.resolve_uri(mlflow_uri), run_id)
        cfg, source = load_yaml_text(text, f"run {run_id}"), f"runs:/{run_id}"
    if max_steps is not None and max_steps <= 0:
        raise OptionError("max_steps", f"must be > 0, got {max_steps}")
    updates = dict(budgets.budget_overrides(budget)) if budget else {}
    if max_steps is not None:
        updates["train.max_steps"] = max_steps
    for key, value in (("data.root", data_root), ("data.fixations", fixations), ("data.split_dir", split_dir)):
        if value is not None:
            updates[key] = str(Path(value).expanduser().resolve())
    cfg = override(cfg, updates) if updates else cfg
    if fixations is None and not cfg.data.fixations and cfg.data.root:
        found = find_fixations(cfg.data.dataset, cfg.data.root)
        if found is not None:
            print(f"fixations: {found} (found beside --data-root; --fixations chooses another)")
            cfg = override(cfg, {"data.fixations": str(found)})
    check_data_paths(cfg)
    return cfg, source


def check_aliases(aliases: Sequence[str]) -> None:
    """Registered-model aliases MLflow accepts, checked before anything trains.

    Raises:
        ConfigError: naming the bad ``--alias``.
    """
    for alias in aliases:
        if not ALIAS.fullmatch(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise OptionError("alias", f"{alias!r} is not a valid alias (letters, digits, _ and -; not 'latest' "
                              "or v<number>)")


def train_final(cfg: Config, *, source: str, workers: int = 1, cpus_per_worker: float = 1.0,
                gpus_per_worker: float = 0.0, storage: str | None = None, name: str | None = None,
                mlflow_uri: str | None = None, experiment: str | None = None, register_as: str | None = None,
                max_failures: int = 2, aliases: Sequence[str] = (), budget: str | None = None) -> FinalResult:
    """Train ``cfg`` on Ray Train, score the test split (when the data has one), and register the model.

    The new model version is tagged with its budget (``fgi.budget``, ``fgi.max_steps``), so a smoke run
    is told apart from a full one; it takes the aliases in ``aliases`` and moves no other.

    Starts a local Ray unless one is initialized or ``RAY_ADDRESS`` names a cluster.

    Args:
        cfg: the config to train (unprepared; the dataset cache is prepared here).
        source: where the config came from (an MLflow tag).
        workers: data-parallel Ray Train workers.
        cpus_per_worker: CPUs per worker.
        gpus_per_worker: GPUs per worker; 0 trains on CPU (gloo).
        storage: local folder or URI for checkpoints; default ``$FGI_HOME/ray_results``.
        name: run name; default ``fgi-<dataset>-final-<time>``; the same name resumes.
        mlflow_uri: tracking URI; default ``MLFLOW_TRACKING_URI`` or the store in ``$FGI_HOME``.
        experiment: MLflow experiment; default ``fgi-<dataset>``.
        register_as: registered model name; default ``fgi-<dataset>``.
        max_failures: worker-group restarts from the latest checkpoint.
        aliases: registered-model aliases (e.g. ``champion``) to point at the new version.
        budget: the ``--budget`` the config was trained under (a version tag); None: the config as is.

    Raises:
        ConfigError: bad resources or aliases, or a batch that does not split over the workers (before anything starts).
        RuntimeError: when the run reported no checkpoint with ``val_dice``.
    """
    if workers < 1:
        raise OptionError("workers", f"must be > 0, got {workers}")
    if cpus_per_worker <= 0:
        raise OptionError("cpus_per_worker", f"must be > 0, got {cpus_per_worker}")
    if gpus_per_worker < 0:
        raise OptionError("gpus_per_worker", f"must be >= 0, got {gpus_per_worker}")
    check_aliases(aliases)
    import ray

    from fgi import tracking
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.run.evaluation import evaluate_checkpoint
    from fgi.run.worker import local_batch_size, prepare
    from fgi.search.ray_train import fit

    local_batch_size(cfg, workers)
    dataset = cfg.data.dataset
    uri = tracking.resolve_uri(mlflow_uri)
    root = storage_path(storage)
    name = name or f"fgi-{dataset}-final-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment = experiment or f"fgi-{dataset}"
    model = register_as or f"fgi-{dataset}"
    print(f"final training {name}: storage {root}/{name}, MLflow {uri} (experiment {experiment})", flush=True)

    prepared = prepare(cfg)
    manifest = load_manifest(resolve_cache_dir(prepared)) or {}
    scored = bool(manifest.get("splits", {}).get("test"))
    if not scored:  # e.g. Kvasir-SEG, whose 100 test images are held back
        print("no test split in the data (no test.txt in --split-dir or the data folder): the model is "
              "selected on val and registered without test metrics", flush=True)
    start_ray(verbose=True)
    run_id = tracking.start_final_run(uri, experiment, cfg, name, source)
    try:
        result = fit(prepared, storage_path=root, name=name, workers=workers,
                                 cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                                 max_failures=max_failures, callbacks=[tracking.TrainCallback(uri, run_id)])
        checkpoints = [(c, m) for c, m in result.best_checkpoints if "val_dice" in m]
        if not checkpoints:
            raise RuntimeError(f"run {name} reported no checkpoint with val_dice")
        checkpoint, best = max(checkpoints, key=lambda cm: cm[1]["val_dice"])
        evaluate = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(evaluate_checkpoint)
        test = ray.get(evaluate.remote(checkpoint.path, "test")) if scored else {}
        best_val = {f"best_{k}": v for k, v in best.items() if k.startswith("val_")}
        tracking.log_final_metrics(uri, run_id, {**test, **best_val}, int(best.get("step", 0)))
        with checkpoint.as_directory() as folder:
            version = tracking.register_model(uri, run_id, folder, model, TeacherStudentTrainer, aliases=aliases,
                                              tags={BUDGET_TAG: budget or "none", STEPS_TAG: str(cfg.train.max_steps)})
    except BaseException:
        tracking.end_run(uri, run_id, failed=True)
        raise
    tracking.end_run(uri, run_id)
    return FinalResult(name=name, run_id=run_id, model=model, version=version, test_metrics=test,
                       best_metrics=dict(best), checkpoint=checkpoint.path, aliases=tuple(aliases))


__all__ = ["ALIAS", "BUDGET_TAG", "STEPS_TAG", "FinalResult", "check_aliases", "final_config", "train_final"]
