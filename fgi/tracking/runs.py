"""MLflow integration: sweeps as parent runs, trials as nested child runs, the final model in the registry.

The only module that imports mlflow (``tracking_queue``, ``tracking_staging``, ``tracking_trials`` and
``tracking_best`` are its MLflow-free parts); it imports nothing that trains. ``SweepTracker``: the parent
run and the log queue; ``TrialCallback`` (Ray Tune): child runs, only enqueued; ``TrainCallback`` (Ray Train):
the final training's curves; ``register_model`` / ``fetch_model``: the registry; ``fetch_best_config``: the best sweep.

Operations the queue could not send before the sweep ended are in ``<sweep storage>/mlflow_spool.jsonl``;
``fgi tune --resume`` sends them again, or ``python -c "from fgi.tracking import replay_spool;
replay_spool('<file>')"`` sends them now. Trust: a ``models:/`` pyfunc wrapper is cloudpickled
(``mlflow.pyfunc.load_model`` runs registry code); fgi downloads only the files and reads ``trainer.pt``
with ``torch.load(weights_only=True)``. Without ``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` the store is
``sqlite:///$FGI_HOME/mlflow.db``, with artifacts beside it in ``mlartifacts/`` (absolute paths: ``ray job
submit`` runs the driver in a temporary copy of the working directory).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.uri import get_uri_scheme
from ray.train import UserCallback

import fgi
from fgi.config import Config, ConfigError, dump_yaml, flatten
from fgi.fields import OptionNotFound
from fgi.paths import fgi_home, git_commit
from fgi.tracking.best import BEST_CONFIG_ARTIFACT, SweepChoice, best_sweep
from fgi.tracking.faults import explain_failure, is_refusal
from fgi.tracking.queue import QUEUES, SPOOL_FILE, LogQueue, replay, take_spool
from fgi.tracking.trials import (
    KIND_TAG,
    OUTCOME_TAG,
    PARENT_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    UNFINISHED,
    StepFilter,
    TrialLogger,
    artifact_location,
    default_root,
    find_run,
    find_runs,
    metrics_of,
    param_text,
)
from fgi.viz import importance_figure

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # MLflow 3 UI: the training layout
FLUSH_TIMEOUT_S = 600.0  # how long the end of a sweep waits for MLflow before spooling the rest
PROGRESS_S = 30.0  # how often that wait says how many operations are left
REFUSED_S = 15.0  # a server that answers yet fails one operation this long is not waited for further
REFUSAL_POLL_S = 1.0  # how often that wait checks whether the server keeps refusing
_MAX_BATCH = 100  # params per log_batch request (MLflow's limit)


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI: ``uri``, else ``MLFLOW_TRACKING_URI``, else the absolute default SQLite store.

    Raises:
        ConfigError: naming the URI when MLflow refuses its file store (a path or ``file:`` URI).
    """
    if not uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        fgi_home().mkdir(parents=True, exist_ok=True)
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{fgi_home() / 'mlflow.db'}"
    if get_uri_scheme(uri) in ("", "file"):  # not a database store: opening one would create it before other checks
        try:
            MlflowClient(tracking_uri=uri)
        except MlflowException as exc:
            raise ConfigError(f"MLflow tracking URI {uri}: {str(exc).split('. ')[0]}") from None
    return uri


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    """Id of experiment ``name``, created if missing, tagged as model development (MLflow's training layout)."""
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri, name),
                                            tags=dict([EXPERIMENT_KIND]))
        except MlflowException:
            exp = client.get_experiment_by_name(name)  # created concurrently
            if exp is None:
                raise
    if EXPERIMENT_KIND[0] not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    return exp.experiment_id


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    existing = client.get_run(run_id).data.params
    items = [Param(k, param_text(v)) for k, v in params.items() if k not in existing]
    for i in range(0, len(items), _MAX_BATCH):
        client.log_batch(run_id, params=items[i:i + _MAX_BATCH])


def _log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])


def is_permanent(exc: BaseException) -> bool:
    """An error that no retry fixes: a request the server rejected (4xx but 429) or a missing local file."""
    if isinstance(exc, MlflowException):
        code = exc.get_http_status_code()
        return 400 <= code < 500 and code != 429
    return isinstance(exc, (FileNotFoundError, LookupError))


class Executor:
    """Runs the queue's operations against one tracking URI. A run is named by its id, or for a trial by
    ``{"exp", "sweep", "trial", "parent"}``: found by tags, else created, so spooled operations replay anywhere."""

    def __init__(self, uri: str) -> None:
        self.uri, self._client, self._ids, self._steps = uri, None, {}, StepFilter()

    def run_id(self, ref: str | Mapping[str, str]) -> str:
        if isinstance(ref, str):
            return ref
        key = (ref["exp"], ref["sweep"], ref["trial"])
        if key not in self._ids:
            c = self.client
            tags = {SWEEP_TAG: ref["sweep"], TRIAL_TAG: ref["trial"]}
            self._steps.found.add(found := find_run(c, ref["exp"], tags))
            self._ids[key] = found or c.create_run(ref["exp"], run_name=f"trial-{ref['trial']}", tags={
                **tags, KIND_TAG: "trial", PARENT_TAG: ref["parent"]}).info.run_id
        return self._ids[key]

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = _client(self.uri)
        return self._client

    def __call__(self, op: str, a: dict[str, Any]) -> None:
        c, run = self.client, self.run_id(a["run"])
        if op == "params":
            _log_params(c, run, a["params"])
        elif op == "log_batch":
            c.log_batch(run, metrics=[Metric(*m) for m in self._steps.keep(c, run, a.get("metrics", []))],
                        tags=[RunTag(k, v) for k, v in a.get("tags", {}).items()])
        elif op == "status":
            c.update_run(run, status=a["status"]) if a["status"] == "RUNNING" else c.set_terminated(run, a["status"])
        elif op == "best_trial":  # the parent names its best trial's run
            child = find_run(c, a["exp"], {SWEEP_TAG: a["sweep"], TRIAL_TAG: a["trial"]})
            if child:
                c.set_tag(run, "fgi.best_trial_run_id", child)
        elif op == "text":
            c.log_text(run, a["text"], a["path"])
        elif op == "files":
            local = Path(a["local"])
            if not local.exists():
                raise FileNotFoundError(f"{local} (staged for run {run}) no longer exists")
            if local.is_dir():
                c.log_artifacts(run, str(local), a["path"])
            else:
                c.log_artifact(run, str(local), a["path"])
        else:
            raise LookupError(f"unknown tracking operation {op!r}")


def replay_spool(path: str | os.PathLike, uri: str | None = None) -> tuple[int, int]:
    """Send a spool file's operations now (``uri``: default ``resolve_uri()``); returns (sent, left)."""
    return replay(path, Executor(resolve_uri(uri)), is_permanent)


class SweepTracker:
    """The sweep's parent run and its log queue.

    Args:
        uri: tracking URI.
        experiment: MLflow experiment name.
        sweep: sweep name (Tune experiment name); tags the parent and its children.
        dataset: dataset name (tag).
        storage: the sweep's storage folder, where the spool file goes; default ``default_root(sweep)``.
        metric: the sweep's metric, tagged on the parent with its best trial (``fgi.best_<metric>``).
        flush_timeout_s: how long ``finish`` waits for the queue before spooling the rest.
    """

    def __init__(self, uri: str, experiment: str, sweep: str, dataset: str, storage: str | os.PathLike | None = None,
                 metric: str = "val_dice", flush_timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        self.uri, self.experiment, self.sweep, self.dataset, self.metric = uri, experiment, sweep, dataset, metric
        self.root = Path(storage) if storage else default_root(sweep)
        self.storage_given = bool(storage)
        self.flush_timeout_s = flush_timeout_s
        self.experiment_id = ""
        self.parent_run_id = ""
        self.queue: LogQueue | None = None

    def start(self, space_text: str, base_config: Config, settings: Mapping[str, Any]) -> str:
        """Create the parent run, or find it again when the sweep resumes; returns its id.

        Runs before the sweep, directly (a bad server fails here); an earlier run's spool is enqueued again.
        """
        client = _client(self.uri)
        self.experiment_id = experiment_id(self.uri, self.experiment)
        run_id = find_run(client, self.experiment_id, {SWEEP_TAG: self.sweep, KIND_TAG: "sweep"})
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
        self.queue = QUEUES[run_id] = LogQueue(Executor(self.uri), is_permanent, self.root / SPOOL_FILE,
                                               explain=explain_failure)
        self.queue.extend(take_spool(self.root / SPOOL_FILE))
        UNFINISHED[run_id] = self.queue
        return run_id

    def finish(self, best_metrics: Mapping[str, Any] | None, best_config_text: str | None,
               importances: Mapping[str, float] | None, failed: bool = False,
               texts: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None) -> int:
        """Log the best trial (metrics, ``fgi.best_trial_run_id``), ``best_config.yaml``, the parameter
        importances, ``texts`` (artifact path -> text) and ``metrics`` (name -> value), close the run, then
        flush the queue; returns how many operations were spooled.

        ``best_config_text`` is logged verbatim: the portable best config (``fgi.budgets.portable_config_text``),
        the same text as the sweep's local ``best_configs/<dataset>.yaml``."""
        q, run_id = self.queue or QUEUES[self.parent_run_id], self.parent_run_id
        if best_metrics:
            now, step = int(time.time() * 1000), int(best_metrics.get("step", 0))
            q.put("log_batch", run=run_id, metrics=[[f"best_{k}", v, now, step] for k, v in metrics_of(best_metrics).items()])
            tags = {f"fgi.best_{self.metric}": str(best_metrics[self.metric])} if self.metric in best_metrics else {}
            if best_metrics.get("trial_id"):
                tags["fgi.best_trial_id"] = str(best_metrics["trial_id"])
                q.put("best_trial", run=run_id, exp=self.experiment_id, sweep=self.sweep, trial=str(best_metrics["trial_id"]))
            q.put("log_batch", run=run_id, tags=tags)
        if best_config_text is not None:
            q.put("text", run=run_id, text=best_config_text, path=BEST_CONFIG_ARTIFACT)
        if importances:
            q.put("text", run=run_id, text=json.dumps(dict(importances), indent=1), path="param_importances.json")
            figure = self.root / "param_importances.png"
            figure.parent.mkdir(parents=True, exist_ok=True)
            importance_figure(importances).savefig(figure)
            q.put("files", run=run_id, local=str(figure), path="")
        for path, text in (texts or {}).items():
            q.put("text", run=run_id, text=text, path=path)
        if metrics:
            now = int(time.time() * 1000)
            q.put("log_batch", run=run_id, metrics=[[k, float(v), now, 0] for k, v in metrics.items()])
        q.put("status", run=run_id, status="FAILED" if failed else "FINISHED")
        UNFINISHED.pop(run_id, None)
        self._wait_out(q)
        spooled = q.close(0.0)
        if spooled:
            print(f"fgi tracking: MLflow at {self.uri} did not take {spooled} operation(s) within "
                  f"{self.flush_timeout_s:.0f} s; they are kept in {q.spool_path}, and resuming the sweep sends "
                  f"them: python tune.py --dataset {self.dataset} --resume --name {self.sweep}"
                  + (f" --storage {self.root.parent}" if self.storage_given else ""),
                  file=sys.stderr, flush=True)
        if not spooled:  # no trial is live any more: a child still RUNNING lost its ending
            try:
                reconcile(self.uri, self.experiment_id, self.sweep, {})
            except (MlflowException, OSError) as exc:
                print(f"fgi tracking: open trial runs not reconciled ({exc})", file=sys.stderr)
        return spooled


    def stop(self) -> int:
        """End a sweep the user stopped: the parent and its open trial runs KILLED (``fgi.outcome=stopped``),
        after what is queued is sent or spooled; returns how many operations were spooled."""
        q, run_id = self.queue or QUEUES[self.parent_run_id], self.parent_run_id
        q.put("log_batch", run=run_id, tags={OUTCOME_TAG: "stopped"})
        q.put("status", run=run_id, status="KILLED")
        UNFINISHED.pop(run_id, None)
        self._wait_out(q)
        spooled = q.close(0.0)
        if not spooled:
            try:
                reconcile(self.uri, self.experiment_id, self.sweep, {}, outcome="stopped")
            except (MlflowException, OSError) as exc:
                print(f"fgi tracking: open trial runs not closed ({exc})", file=sys.stderr)
        return spooled

    def _wait_out(self, q: LogQueue) -> None:
        """Wait up to ``flush_timeout_s`` for the queue, saying what it waits for (every ``PROGRESS_S``)."""
        pending = q.pending()
        if not pending:
            return
        print(f"sending {pending} operation(s) to MLflow at {self.uri} (waiting up to "
              f"{self.flush_timeout_s:.0f} s)", file=sys.stderr, flush=True)
        deadline = time.monotonic() + self.flush_timeout_s
        noted = time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            wait, t0 = min(REFUSAL_POLL_S, left), time.monotonic()
            if q.flush(wait) or time.monotonic() - t0 < wait / 2:  # all sent, or the sender is gone
                return
            error = f" (last error: {q.last_error})" if q.last_error is not None else ""
            if is_refusal(q.last_error) and q.failing_for() > REFUSED_S:
                print(f"MLflow at {self.uri} has refused the same operation for {q.failing_for():.0f} s{error}; "
                      "not waiting longer", file=sys.stderr, flush=True)
                return
            if time.monotonic() - noted >= PROGRESS_S:
                noted = time.monotonic()
                print(f"{q.pending()} operation(s) still waiting for MLflow at {self.uri}{error}",
                      file=sys.stderr, flush=True)


class TrialCallback(TrialLogger):
    """``fgi.tracking.trials.TrialLogger`` whose queue (when no ``SweepTracker`` made one) logs to MLflow."""

    make_executor = Executor
    is_permanent = staticmethod(is_permanent)
    explain = staticmethod(explain_failure)


def reconcile(uri: str, experiment_id: str, sweep: str, tune_status: Mapping[str, str],
              outcome: str = "orphaned") -> list[str]:
    """Close the child runs of ``sweep`` left RUNNING whose trial Tune does not hold as live.

    For ``--resume``: a child whose trial Tune holds as TERMINATED or ERROR (or not at all) lost its ending
    in a crash; it ends KILLED with ``fgi.outcome`` ``outcome`` (``stopped`` when the user stopped the sweep).

    Args:
        uri: tracking URI.
        experiment_id: the sweep's experiment.
        sweep: sweep name.
        tune_status: Tune trial id -> status (``Trial.status``) of the restored sweep.

    Returns the run ids it closed.
    """
    client, closed = _client(uri), []
    for run in find_runs(client, experiment_id, {SWEEP_TAG: sweep, KIND_TAG: "trial"}):
        if run.info.status == "RUNNING" and tune_status.get(run.data.tags.get(TRIAL_TAG, "")) not in _LIVE:
            client.set_tag(run.info.run_id, OUTCOME_TAG, outcome)
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


_LIVE = ("PENDING", "RUNNING", "PAUSED")  # Tune trial statuses whose run stays open
class TrainCallback(UserCallback):
    """Ray Train callback that logs every report of a run to MLflow run ``run_id``, live."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id

    def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
        m = metrics[0]
        _log_metrics(_client(self.uri), self.run_id, metrics_of(m), int(m.get("step", 0)))


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
    _log_metrics(_client(uri), run_id, metrics_of(metrics), step)


def end_run(uri: str, run_id: str, failed: bool = False) -> None:
    """Close a run as FINISHED or FAILED."""
    _client(uri).set_terminated(run_id, "FAILED" if failed else "FINISHED")


def fetch_best_config(uri: str, experiment: str, *, sweep: str | None = None, metric: str = "val_dice",
                      mode: str = "max", budget: str | None = None) -> SweepChoice:
    """The ``best_config.yaml`` of the best FINISHED sweep in ``experiment`` by ``best_<metric>`` (or of sweep
    ``sweep``), as ``fgi.tracking.best.choose_sweep`` picks it; the chosen sweep, its config text in ``text``.

    Args:
        uri: tracking URI.
        experiment: MLflow experiment name.
        sweep, metric, mode, budget: as in ``fgi.tracking.best.choose_sweep``.

    Raises:
        LookupError: no such experiment or sweep, or no finished sweep there with a best config.
    """
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise OptionNotFound("experiment", f"no experiment {experiment!r} at {uri}; experiments there: {names}")
    return best_sweep(client, exp.experiment_id, experiment, metric=metric, mode=mode, sweep=sweep, budget=budget)


def config_of_run(uri: str, run_id: str) -> str:
    """The config YAML on a run: a sweep's ``best_config.yaml``, a run's ``config.yaml`` or its checkpoint's."""
    client = _client(uri)
    for path in (BEST_CONFIG_ARTIFACT, "config.yaml", "checkpoint/config.yaml"):
        folder = str(Path(path).parent) if "/" in path else None
        names = {a.path for a in client.list_artifacts(run_id, folder)}
        if path in names:
            with tempfile.TemporaryDirectory() as tmp:
                return Path(client.download_artifacts(run_id, path, tmp)).read_text()
    raise OptionNotFound("from_mlflow", f"run {run_id} has no {BEST_CONFIG_ARTIFACT}, config.yaml or checkpoint/config.yaml")


def log_run_text(uri: str, run_id: str, text: str, path: str) -> None:
    """Add ``text`` as artifact ``path`` of an existing run (e.g. a fidelity table on a sweep's parent run).

    Raises:
        OptionNotFound: naming the run, when the server has no such run.
    """
    client = _client(uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise OptionNotFound("log_to_run", f"no run {run_id} on {uri}") from None
    client.log_text(run_id, text, path)


__all__ = [
    "BEST_CONFIG_ARTIFACT", "EXPERIMENT_KIND", "Executor", "SweepChoice", "SweepTracker", "TrainCallback", "TrialCallback",
    "config_of_run", "end_run", "experiment_id", "fetch_best_config", "is_permanent", "log_final_metrics",
    "log_run_text", "reconcile", "replay_spool", "resolve_uri", "start_final_run",
]
