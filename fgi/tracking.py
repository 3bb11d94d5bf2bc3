"""MLflow integration: sweeps as parent runs, trials as nested child runs, the final model in the registry.

This is the only module that imports mlflow, and it imports nothing that trains.

- ``SweepTracker`` owns the sweep's parent run (found again by its ``fgi.sweep`` tag, so a resumed sweep
  continues it) and writes the summary: best metrics, ``best_config.yaml`` and Optuna importances.
- ``TrialCallback`` (Ray Tune) keeps one child run per trial (found again by its ``fgi.trial_id`` tag, so
  retries and resumes never duplicate runs), logs params and metric curves against the training step,
  uploads the trial's best checkpoint and overlay, and tags how the trial ended.
- ``TrainCallback`` (Ray Train) logs the final training's curves live.
- ``register_model`` logs a checkpoint as a pyfunc model and registers it; ``fetch_model`` turns a
  ``models:/`` URI, a ``runs:/`` model or a local path into a checkpoint folder for ``fgi.checkpoint``.

Trust: ``models:/`` URIs name MLflow pyfunc models, whose wrapper is cloudpickled: loading one with
``mlflow.pyfunc.load_model`` runs code stored in the registry, so such URIs must come from a trusted
registry. fgi itself downloads only the model's files and reads ``trainer.pt`` with
``torch.load(weights_only=True)``, so a crafted checkpoint runs nothing there.

Without ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` the store is ``sqlite:///$FGI_HOME/mlflow.db`` with
artifacts in ``$FGI_HOME/mlartifacts`` (absolute: ``ray job submit`` runs the driver in a temporary copy
of the working directory).
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.train import UserCallback
from ray.tune import Callback

import fgi
from fgi.checkpoint import CHECKPOINT_FILE, NORMALIZATION_FILE, load_folder
from fgi.config import Config, dump_yaml, flatten
from fgi.paths import fgi_home, git_commit
from fgi.viz import importance_figure

SWEEP_TAG = "fgi.sweep"  # marks a sweep's parent run and its children
TRIAL_TAG = "fgi.trial_id"  # Tune trial id of a child run
KIND_TAG = "fgi.kind"  # sweep | trial | final
OUTCOME_TAG = "fgi.outcome"  # finished | stopped_early | failed
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
LOGGED_PREFIXES = ("val_", "loss", "test_", "best_val_")  # reported keys logged as metrics
LOGGED_KEYS = ("lr", "rampup", "epoch")
BEST_CONFIG_ARTIFACT = "best_config.yaml"
_MAX_BATCH = 100  # params per log_batch request (MLflow's limit)


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI: ``uri``, else ``MLFLOW_TRACKING_URI``, else the absolute default SQLite store."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = fgi_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def _client(uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    """Id of experiment ``name``, created if missing (local stores keep artifacts under ``$FGI_HOME``)."""
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
        location = (fgi_home() / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        exp = client.get_experiment_by_name(name)  # created concurrently
        if exp is None:
            raise
        return exp.experiment_id


def _find_run(client: MlflowClient, exp_id: str, tags: Mapping[str, str]) -> str | None:
    clause = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([exp_id], filter_string=clause, max_results=2, order_by=["attributes.start_time ASC"])
    return runs[0].info.run_id if runs else None


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    existing = client.get_run(run_id).data.params
    items = [Param(k, json.dumps(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in params.items()
             if k not in existing]
    for i in range(0, len(items), _MAX_BATCH):
        client.log_batch(run_id, params=items[i:i + _MAX_BATCH])


def _metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in result.items():
        if (k.startswith(LOGGED_PREFIXES) or k in LOGGED_KEYS) and isinstance(v, (int, float)) and not isinstance(v, bool):
            if math.isfinite(float(v)):
                out[k] = float(v)
    return out


def _log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])


class SweepTracker:
    """The sweep's parent run.

    Args:
        uri: tracking URI.
        experiment: MLflow experiment name.
        sweep: sweep name (Tune experiment name); tags the parent and its children.
        dataset: dataset name (tag).
    """

    def __init__(self, uri: str, experiment: str, sweep: str, dataset: str) -> None:
        self.uri, self.experiment, self.sweep, self.dataset = uri, experiment, sweep, dataset
        self.experiment_id = ""
        self.parent_run_id = ""

    def start(self, space_text: str, base_config: Config, settings: Mapping[str, Any]) -> str:
        """Create the parent run, or find it again when the sweep resumes; returns its id."""
        client = _client(self.uri)
        self.experiment_id = experiment_id(self.uri, self.experiment)
        run_id = _find_run(client, self.experiment_id, {SWEEP_TAG: self.sweep, KIND_TAG: "sweep"})
        if run_id is None:
            run = client.create_run(self.experiment_id, run_name=self.sweep, tags={
                SWEEP_TAG: self.sweep, KIND_TAG: "sweep", "dataset": self.dataset, "git_commit": git_commit(),
                "fgi_version": fgi.__version__})
            run_id = run.info.run_id
            client.log_text(run_id, space_text, "search_space.yaml")
            client.log_text(run_id, dump_yaml(base_config), "base_config.yaml")
            _log_params(client, run_id, {f"sweep.{k}": v for k, v in settings.items()})
        else:
            client.update_run(run_id, status="RUNNING")
        self.parent_run_id = run_id
        return run_id

    def finish(self, best_metrics: Mapping[str, float] | None, best_config: Config | None,
               importances: Mapping[str, float] | None, failed: bool = False) -> None:
        """Log the best trial's metrics, ``best_config.yaml`` and the parameter importances; close the run."""
        client = _client(self.uri)
        run_id = self.parent_run_id
        if best_metrics:
            _log_metrics(client, run_id, {f"best_{k}": v for k, v in _metrics_of(best_metrics).items()},
                         int(best_metrics.get("step", 0)))
        if best_config is not None:
            client.log_text(run_id, dump_yaml(best_config), BEST_CONFIG_ARTIFACT)
        if importances:
            client.log_dict(run_id, dict(importances), "param_importances.json")
            client.log_figure(run_id, importance_figure(importances), "param_importances.png")
        client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


class TrialCallback(Callback):
    """Ray Tune callback: one nested MLflow run per trial.

    Args:
        uri: tracking URI.
        experiment_id: MLflow experiment id.
        parent_run_id: the sweep's parent run.
        sweep: sweep name (tag).
        params_of: maps a Tune trial config to the flattened params to log (picklable).
        max_steps: the run length; a trial that ends before it was stopped early.
        metric: the metric whose best step picks the uploaded checkpoint.
        mode: "max" or "min".
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, sweep: str,
                 params_of: Callable[[Mapping[str, Any]], Mapping[str, Any]], max_steps: int,
                 metric: str = "val_dice", mode: str = "max") -> None:
        self.uri, self.experiment_id, self.parent_run_id, self.sweep = uri, experiment_id, parent_run_id, sweep
        self.params_of, self.max_steps, self.metric, self.mode = params_of, max_steps, metric, mode
        self.runs: dict[str, str] = {}
        self.best: dict[str, dict[str, Any]] = {}
        self.last_step: dict[str, int] = {}  # newest logged step per trial: a replayed report is not logged twice
        self._client: MlflowClient | None = None
        self._synced: set[str] = set()  # trials whose last_step this process has read back from MLflow

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_synced")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._client = None
        self._synced = set()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = _client(self.uri)
        return self._client

    def get_state(self) -> dict:
        return {"runs": dict(self.runs), "best": dict(self.best), "last_step": dict(self.last_step)}

    def set_state(self, state: dict) -> None:
        self.runs.update(state.get("runs", {}))
        self.best.update(state.get("best", {}))
        self.last_step.update(state.get("last_step", {}))

    def run_of(self, trial: Any) -> str:
        """The child run of a trial: cached, found by tag, or created with the trial's params."""
        tid = trial.trial_id
        if tid in self._synced:
            return self.runs[tid]
        # first sight of this trial in this process: a resumed sweep's saved state may lag behind MLflow
        run_id = self.runs.get(tid) or _find_run(self.client, self.experiment_id, {SWEEP_TAG: self.sweep, TRIAL_TAG: tid})
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, run_name=f"trial-{tid}", tags={
                SWEEP_TAG: self.sweep, TRIAL_TAG: tid, KIND_TAG: "trial", PARENT_TAG: self.parent_run_id}).info.run_id
            _log_params(self.client, run_id, self.params_of(trial.config))
        else:
            history = self.client.get_metric_history(run_id, self.metric)
            self.last_step[tid] = max([m.step for m in history] + [self.last_step.get(tid, -1)])
        self.runs[tid] = run_id
        self._synced.add(tid)
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.client.update_run(self.run_of(trial), status="RUNNING")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.client.set_tag(self.run_of(trial), "fgi.retries", str(trial.num_failures))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self.run_of(trial)
        step = int(result.get("step", result.get("training_iteration", 0)))
        if step > self.last_step.get(trial.trial_id, -1):
            _log_metrics(self.client, run_id, _metrics_of(result), step)
            self.last_step[trial.trial_id] = step
        value = result.get(self.metric)
        if value is None:
            return
        best = self.best.get(trial.trial_id)
        if best is None or (value > best["value"] if self.mode == "max" else value < best["value"]):
            self.best[trial.trial_id] = {"value": float(value), "step": step,
                                         "checkpoint": result.get("checkpoint_path") or (best or {}).get("checkpoint")}

    def _upload_best(self, trial: Any, run_id: str) -> None:
        best = self.best.get(trial.trial_id)
        if not best or not best.get("checkpoint"):
            return
        from ray.train import Checkpoint

        path = best["checkpoint"]
        if "://" not in path and not Path(path).is_dir():
            self.client.set_tag(run_id, "fgi.checkpoint_missing", path)
            return
        with Checkpoint(path).as_directory() as folder:
            self.client.log_artifacts(run_id, folder, "checkpoint")
            overlay = Path(folder) / "overlay.png"
            if overlay.is_file():
                self.client.log_artifact(run_id, str(overlay), "overlay")
        self.client.set_tag(run_id, "fgi.best_step", str(best["step"]))
        _log_metrics(self.client, run_id, {f"best_{self.metric}": best["value"]}, best["step"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.run_of(trial)
        self._upload_best(trial, run_id)
        early = int((trial.last_result or {}).get("step", 0)) < self.max_steps
        self.client.set_tag(run_id, OUTCOME_TAG, "stopped_early" if early else "finished")
        self.client.set_terminated(run_id, "KILLED" if early else "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.run_of(trial)
        self._upload_best(trial, run_id)
        self.client.set_tag(run_id, OUTCOME_TAG, "failed")
        if trial.error_file and Path(trial.error_file).is_file():
            self.client.log_artifact(run_id, trial.error_file, "error")
        self.client.set_terminated(run_id, "FAILED")


class TrainCallback(UserCallback):
    """Ray Train callback that logs every report of a run to MLflow run ``run_id``, live."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id

    def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
        m = metrics[0]
        _log_metrics(_client(self.uri), self.run_id, _metrics_of(m), int(m.get("step", 0)))


def start_final_run(uri: str, experiment: str, cfg: Config, run_name: str, source: str) -> str:
    """Create the final-training run with the flattened config as params; returns its id."""
    client = _client(uri)
    exp_id = experiment_id(uri, experiment)
    run = client.create_run(exp_id, run_name=run_name, tags={
        KIND_TAG: "final", "dataset": cfg.data.dataset, "git_commit": git_commit(), "fgi_version": fgi.__version__,
        "fgi.config_source": source})
    _log_params(client, run.info.run_id, flatten(cfg))
    client.log_text(run.info.run_id, dump_yaml(cfg), "config.yaml")
    return run.info.run_id


def log_final_metrics(uri: str, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Log test metrics (or any final numbers) on a run."""
    _log_metrics(_client(uri), run_id, _metrics_of(metrics), step)


def end_run(uri: str, run_id: str, failed: bool = False) -> None:
    """Close a run as FINISHED or FAILED."""
    _client(uri).set_terminated(run_id, "FAILED" if failed else "FINISHED")


MODEL_ARTIFACTS = "artifacts"  # folder of a logged pyfunc model that holds its checkpoint files


@functools.cache
def model_class() -> type:
    """The MLflow pyfunc class of fgi models (``predict``: images (B, C, H, W) to probabilities).

    Built on first use: MLflow warns at class creation that ``predict`` has no type hints (inputs are plain
    arrays on purpose), and only registering or loading a model should pay for that. cloudpickle stores
    the class by value with the logged model, and the engine class it rebuilds by reference.
    """

    class FgiModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc wrapper of an fgi checkpoint, rebuilt as ``trainer_class``."""

        def __init__(self, trainer_class: type) -> None:
            self.trainer_class = trainer_class

        def load_context(self, context: Any) -> None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            folder = Path(context.artifacts["checkpoint"]).parent
            self.trainer, self.normalization = load_folder(folder, self.trainer_class, device)

        def predict(self, context, model_input, params=None):
            import numpy as np
            import torch

            probs = self.trainer.predict(torch.as_tensor(np.asarray(model_input, dtype=np.float32)))
            return probs.cpu().numpy()

    return FgiModel


def register_model(uri: str, run_id: str, checkpoint_dir: str | os.PathLike, name: str,
                   trainer_class: type) -> str:
    """Log a checkpoint folder on ``run_id`` as a pyfunc model and register it as ``name``; returns the version.

    ``trainer_class`` is the engine class the pyfunc wrapper rebuilds (``fgi.engine.TeacherStudentTrainer``),
    pickled by reference.
    """
    _client(uri)
    folder = Path(checkpoint_dir)
    artifacts = {"checkpoint": str(folder / CHECKPOINT_FILE), "normalization": str(folder / NORMALIZATION_FILE)}
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model_class()(trainer_class), artifacts=artifacts,
            registered_model_name=name, pip_requirements=[f"fgi=={fgi.__version__}"])
    mlflow.end_run()
    return str(info.registered_model_version)


@contextmanager
def fetch_model(model: str, uri: str | None = None) -> Iterator[Path]:
    """A local checkpoint folder (``trainer.pt``, ``normalization.json``) of ``model`` during the ``with`` block.

    ``model`` is ``models:/<name>/<version>``, a ``runs:/<id>/<path>`` model logged by ``register_model``,
    or a local checkpoint folder or its ``trainer.pt``. A registered model's files are downloaded into a
    temporary folder, removed after the block; its pickled pyfunc wrapper is downloaded, never loaded.

    Raises:
        ValueError: when the model cannot be found or holds no fgi checkpoint; the message names it.
    """
    p = Path(model)
    if p.exists():
        yield p if p.is_dir() else p.parent
        return
    tracking_uri = resolve_uri(uri)
    _client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="fgi-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=tmp))
        except mlflow.exceptions.MlflowException as exc:
            raise ValueError(f"--model: cannot load {model!r} from {tracking_uri} ({exc.message})") from None
        folder = local / MODEL_ARTIFACTS
        if not (folder / CHECKPOINT_FILE).is_file():
            raise ValueError(f"--model: {model!r} holds no {MODEL_ARTIFACTS}/{CHECKPOINT_FILE}; it was not "
                             "registered by fgi")
        yield folder


def fetch_best_config(uri: str, experiment: str, sweep: str | None = None) -> tuple[str, str]:
    """``best_config.yaml`` text of the latest finished sweep in ``experiment`` (or of sweep ``sweep``).

    Returns:
        (YAML text, parent run id).

    Raises:
        LookupError: when no sweep run there has a best config.
    """
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise LookupError(f"--experiment: no experiment {experiment!r} at {uri}; experiments there: {names}")
    clause = f"tags.`{KIND_TAG}` = 'sweep'" + (f" and tags.`{SWEEP_TAG}` = '{sweep}'" if sweep else "")
    for run in client.search_runs([exp.experiment_id], filter_string=clause, order_by=["attributes.start_time DESC"]):
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        if BEST_CONFIG_ARTIFACT in names:
            with tempfile.TemporaryDirectory() as tmp:
                local = client.download_artifacts(run.info.run_id, BEST_CONFIG_ARTIFACT, tmp)
                return Path(local).read_text(), run.info.run_id
    raise LookupError(f"--experiment: no sweep in {experiment!r} has a {BEST_CONFIG_ARTIFACT} yet")


def config_of_run(uri: str, run_id: str) -> str:
    """The config YAML stored on a run: ``best_config.yaml`` of a sweep, or ``config.yaml`` / the best
    checkpoint's config of a trial or final run."""
    client = _client(uri)
    for path in (BEST_CONFIG_ARTIFACT, "config.yaml", "checkpoint/config.yaml"):
        folder = str(Path(path).parent) if "/" in path else None
        names = {a.path for a in client.list_artifacts(run_id, folder)}
        if path in names:
            with tempfile.TemporaryDirectory() as tmp:
                return Path(client.download_artifacts(run_id, path, tmp)).read_text()
    raise LookupError(f"--from-mlflow: run {run_id} has no {BEST_CONFIG_ARTIFACT}, config.yaml or checkpoint/config.yaml")


__all__ = [
    "BEST_CONFIG_ARTIFACT", "SweepTracker", "TrainCallback", "TrialCallback", "config_of_run", "end_run",
    "experiment_id", "fetch_best_config", "fetch_model", "log_final_metrics", "model_class",
    "register_model", "resolve_uri", "start_final_run",
]
