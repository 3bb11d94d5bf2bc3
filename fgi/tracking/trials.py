"""The Ray Tune side of tracking: one MLflow child run per trial, written only through the sweep's log queue.

``TrialLogger`` never calls MLflow: every hook enqueues operations (``fgi.tracking.queue``) that
``fgi.tracking.Executor`` runs on the queue's thread, so a slow or restarting server never stalls Tune's
driver loop. ``fgi.tracking.TrialCallback`` is this class bound to that executor.
"""

from __future__ import annotations

import atexit
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from ray.tune import Callback

from fgi.checkpoint import OVERLAY_FILE, read_metrics
from fgi.groups import GROUP_TAG, SEED_KEY, SEED_TAG, best_group, group_id, group_scores
from fgi.paths import fgi_home
from fgi.tracking.queue import QUEUES, SPOOL_FILE, Execute, LogQueue, take_spool
from fgi.tracking.staging import stage, staged

SWEEP_TAG = "fgi.sweep"  # marks a sweep's parent run and its children
TRIAL_TAG = "fgi.trial_id"  # Tune trial id of a child run
KIND_TAG = "fgi.kind"  # sweep | trial | final
OUTCOME_TAG = "fgi.outcome"  # finished | stopped_early | failed | orphaned
TUNED_TAG = "fgi.tuned_params"  # the searched keys of a trial, comma-separated
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
LOGGED_PREFIXES = ("val_", "loss", "test_", "best_val_", "infer_")  # reported keys logged as metrics
LOGGED_KEYS = ("lr", "rampup", "epoch")
CRASH_FLUSH_TIMEOUT_S = 30.0  # how long an exit without SweepTracker.finish waits for MLflow
STAGING_DIR = "mlflow_staging"  # staged best checkpoints, beside the sweep's trials
_SAFE_VALUE = re.compile(r"[^'\"\\]*")  # filter values MLflow's parser reads back verbatim inside '...'


def metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a report that are logged as MLflow metrics."""
    out = {}
    for k, v in result.items():
        if (k.startswith(LOGGED_PREFIXES) or k in LOGGED_KEYS) and isinstance(v, (int, float)) and not isinstance(v, bool):
            if math.isfinite(float(v)):
                out[k] = float(v)
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"loss.tau": 1}`` to ``{"loss": {"tau": 1}}`` (the YAML layout of a config)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifact root of a new experiment: beside a SQLite database file; None (the store's default) elsewhere."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve()  # sqlite:///rel.db is relative to the cwd
    name = re.sub(r"[^A-Za-z0-9_-]", "_", experiment)
    return (db.parent / "mlartifacts" / name).as_uri()


def find_runs(client: Any, exp_id: str, tags: Mapping[str, str], order: str = "ASC") -> list[Any]:
    """Runs whose tags equal ``tags`` exactly, by start time. A value MLflow's filter syntax cannot hold
    verbatim (a quote, a backslash) stays out of the server filter and is matched here, so no name can
    break or widen the search."""
    clause = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items() if _SAFE_VALUE.fullmatch(v))
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=clause, max_results=1000, page_token=token,
                                  order_by=[f"attributes.start_time {order}"])
        out += [r for r in page if all(r.data.tags.get(k) == v for k, v in tags.items())]
        token = page.token
        if not token:
            return out


def param_text(v: Any) -> str:
    """An MLflow param's text: lists as JSON, the rest as ``str``."""
    return json.dumps(list(v)) if isinstance(v, (list, tuple)) else str(v)


class StepFilter:
    """Metric rows a trial run does not hold yet. A run found (not created) by a new driver may already hold
    points that its resumed trial reports again (Tune's last snapshot can predate them), and MLflow would
    keep both; the run's newest step per key is read once, then kept up to date here."""

    def __init__(self) -> None:
        self.found: set[str | None] = set()
        self.logged: dict[tuple[str, str], int] = {}

    def keep(self, client: Any, run: str, rows: list[list[Any]]) -> list[list[Any]]:
        """``[key, value, timestamp, step]`` rows past the run's newest step of their key in the store of
        ``client`` (an ``MlflowClient``); all rows, for a run this driver created."""
        if run not in self.found:
            return rows
        out = []
        for row in rows:
            key, step = row[0], row[3]
            if (run, key) not in self.logged:
                self.logged[run, key] = max((m.step for m in client.get_metric_history(run, key)), default=-1)
            if step > self.logged[run, key]:
                out.append(row)
                self.logged[run, key] = step
        return out


def find_run(client: Any, exp_id: str, tags: Mapping[str, str]) -> str | None:
    runs = find_runs(client, exp_id, tags)
    return runs[0].info.run_id if runs else None


def default_root(sweep: str) -> Path:
    """Spool and staging folder of a sweep that names no storage: ``$FGI_HOME/mlflow_spool/<sweep>``."""
    return fgi_home() / "mlflow_spool" / re.sub(r"[^A-Za-z0-9_.-]", "_", sweep).lstrip(".")


def _local_experiment_dir(trial: Any) -> Path | None:
    storage = getattr(trial, "storage", None)
    fs = getattr(storage, "storage_filesystem", None)
    if storage is None or getattr(fs, "type_name", "") != "local":
        return None
    return Path(storage.experiment_fs_path)


class TrialLogger(Callback):
    """Ray Tune callback: one nested MLflow run per trial, logged through the sweep's queue.

    Args:
        uri: tracking URI.
        experiment_id: MLflow experiment id.
        parent_run_id: the sweep's parent run.
        sweep: sweep name (tag).
        params_of: maps a Tune trial config to the flattened full config (picklable); the trial's params
            are the keys of its Tune config (the searched ones), the full config goes to ``config.yaml``.
        max_steps: the run length; a trial that ends before it was stopped early.
        metric: the metric whose best step picks the uploaded checkpoint.
        mode: "max" or "min".
        staging: folder of the staged checkpoints; default ``<sweep storage>/mlflow_staging``.
        seeds: runs per config (``fgi.groups``): with 2 or more, each child is tagged with its group and seed, a
            group's mean and spread are logged on its children once all its seeds ended, and the parent's
            best-so-far counts whole groups by their mean.
        group_keys: the searched keys, whose values name a trial's group (its seed is not among them).
        objectives: objective -> direction of a multi-objective sweep: as trials finish, the Pareto front so far
            is kept on the parent run (``pareto_front.md``, ``pareto_front_size``) and on the children's
            ``fgi.pareto_front`` tags, so the MLflow UI shows it while the sweep runs.
    """

    make_executor: Callable[[str], Execute]  # set by fgi.tracking.TrialCallback
    is_permanent: Callable[[BaseException], bool]
    explain: Callable[[Mapping[str, Any], BaseException], str | None] | None = None

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, sweep: str,
                 params_of: Callable[[Mapping[str, Any]], Mapping[str, Any]], max_steps: int,
                 metric: str = "val_dice", mode: str = "max", staging: str | Path | None = None, seeds: int = 1,
                 group_keys: tuple[str, ...] = (), objectives: Mapping[str, str] | None = None) -> None:
        self.uri, self.experiment_id, self.parent_run_id, self.sweep = uri, experiment_id, parent_run_id, sweep
        self.params_of, self.max_steps, self.metric, self.mode = params_of, max_steps, metric, mode
        self.staging = Path(staging) if staging else None
        self.best: dict[str, dict[str, Any]] = {}  # trial id -> {"value", "step"} of its staged checkpoint
        self.last_step: dict[str, int] = {}  # newest logged step per trial: a replayed report is not logged twice
        self.finished: dict[str, float] = {}  # trial id -> best value, of the trials that ran to their end
        self.seeds, self.group_keys = int(seeds), tuple(group_keys)
        self.groups: dict[str, tuple[str, int]] = {}  # trial id -> (group id, seed), with seeds > 1
        self.objectives = dict(objectives or {})
        self.points: dict[str, dict[str, float]] = {}  # trial id -> objective values, of finished trials
        self.on_front: list[str] = []  # trial ids of the front so far
        self._seen: set[str] = set()  # trials whose run this process has asked the queue to set up
        self._warned = False

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_seen", "_warned")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._seen, self._warned = set(), False

    def get_state(self) -> dict:
        return {"best": dict(self.best), "last_step": dict(self.last_step), "finished": dict(self.finished),
                "groups": dict(self.groups), "points": dict(self.points), "on_front": list(self.on_front)}

    def set_state(self, state: dict) -> None:
        self.best.update(state.get("best", {}))
        self.last_step.update(state.get("last_step", {}))
        self.finished.update(state.get("finished", {}))
        self.groups.update({k: tuple(v) for k, v in state.get("groups", {}).items()})
        self.points.update(state.get("points", {}))
        self.on_front = list(state.get("on_front", self.on_front))

    def ref(self, trial: Any) -> dict[str, str]:
        """How queued operations name the trial's run (found by tags or created on the queue's thread)."""
        return self.ref_of(trial.trial_id)

    def queue(self, trial: Any) -> LogQueue:
        """The sweep's log queue; made here (spooling beside the sweep storage) when no tracker made one."""
        q = QUEUES.get(self.parent_run_id)
        if q is None or q.closed:
            root = _local_experiment_dir(trial) or Path(self.staging or ".").resolve()
            q = QUEUES[self.parent_run_id] = LogQueue(type(self).make_executor(self.uri), type(self).is_permanent,
                                                      root / SPOOL_FILE, explain=type(self).explain)
        if self.staging is None:
            self.staging = (_local_experiment_dir(trial) or q.spool_path.parent) / STAGING_DIR
        exp_dir = _local_experiment_dir(trial)
        if not self._seen and exp_dir is not None and (exp_dir / SPOOL_FILE) != q.spool_path:
            q.extend(take_spool(exp_dir / SPOOL_FILE))  # what an earlier run of this sweep could not send
        return q

    def _open(self, trial: Any) -> LogQueue:
        q = self.queue(trial)
        tid = trial.trial_id
        if tid not in self._seen:
            self._seen.add(tid)
            full = dict(self.params_of(trial.config))
            tuned = {k: trial.config[k] for k in trial.config if k in full}
            q.put("params", run=self.ref(trial), params=tuned)
            tags = {TUNED_TAG: ",".join(sorted(tuned))}
            if self.seeds > 1:
                group = group_id({k: trial.config[k] for k in self.group_keys if k in trial.config})
                self.groups[tid] = (group, int(full.get(SEED_KEY, 0)))
                tags.update({GROUP_TAG: group, SEED_TAG: str(self.groups[tid][1])})
            q.put("log_batch", run=self.ref(trial), tags=tags)
            q.put("text", run=self.ref(trial), text=yaml.safe_dump(nest(full), sort_keys=False), path="config.yaml")
            OPEN_CHILDREN.setdefault(self.parent_run_id, {})[tid] = self.ref(trial)
        return q

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open(trial).put("status", run=self.ref(trial), status="RUNNING")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open(trial).put("log_batch", run=self.ref(trial), tags={"fgi.retries": str(trial.num_failures)})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        q, tid = self._open(trial), trial.trial_id
        step = int(result.get("step", result.get("training_iteration", 0)))
        if step > self.last_step.get(tid, -1):
            now = int(time.time() * 1000)
            q.put("log_batch", run=self.ref(trial), metrics=[[k, v, now, step] for k, v in metrics_of(result).items()])
            self.last_step[tid] = step
        value, path = result.get(self.metric), result.get("checkpoint_path")
        best = self.best.get(tid)
        if value is None or not path or "://" in str(path):
            return
        if best is None or (value > best["value"] if self.mode == "max" else value < best["value"]):
            try:  # before Tune's num_to_keep can delete it
                stage(path, self.staging, tid, float(value), step)
                self.best[tid] = {"value": float(value), "step": step}
            except (OSError, ValueError) as exc:  # ValueError: a truncated checkpoint, never uploaded as best
                self._warn(f"trial {tid}: best checkpoint {path} not staged ({exc})")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            print(f"fgi tracking: {message}; later staging errors are not reported", file=sys.stderr, flush=True)

    def _upload_best(self, q: LogQueue, trial: Any) -> None:
        """Enqueue the upload of the staged best checkpoint, or of the trial's latest one still on disk,
        with the metric value and step read from that very folder."""
        found = staged(self.staging, trial.trial_id) if self.staging else None
        if found is None:
            latest = getattr(getattr(trial, "checkpoint", None), "path", None)
            if not latest or not Path(latest).is_dir():
                return
            m = read_metrics(latest)
            if self.metric not in m:
                return
            found = Path(latest), {"value": m[self.metric], "step": m.get("step", 0)}
        folder, meta = found
        ref, now = self.ref(trial), int(time.time() * 1000)
        q.put("files", run=ref, local=str(folder), path="checkpoint")
        if (folder / OVERLAY_FILE).is_file():
            q.put("files", run=ref, local=str(folder / OVERLAY_FILE), path="overlay")
        q.put("log_batch", run=ref, metrics=[[f"best_{self.metric}", float(meta["value"]), now, int(meta["step"])]],
              tags={"fgi.best_step": str(int(meta["step"]))})

    def _end(self, trial: Any, status: str, outcome: str) -> None:
        q = self._open(trial)
        self._upload_best(q, trial)
        q.put("log_batch", run=self.ref(trial), tags={OUTCOME_TAG: outcome})
        q.put("status", run=self.ref(trial), status=status)
        OPEN_CHILDREN.get(self.parent_run_id, {}).pop(trial.trial_id, None)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        early = int((trial.last_result or {}).get("step", 0)) < self.max_steps
        self._end(trial, "FINISHED", "stopped_early" if early else "finished")
        if not early:
            self._best_so_far(trial)
            if self.objectives:
                self._front_so_far(trial)

    def _front_so_far(self, trial: Any) -> None:
        """Add a finished trial's last values and log the front they make with the earlier ones."""
        from fgi.pareto import pareto_front
        from fgi.tracking.front import FRONT_TABLE, FRONT_TAG, front_table

        last = trial.last_result or {}
        if not all(isinstance(last.get(o), (int, float)) and math.isfinite(float(last[o])) for o in self.objectives):
            return
        self.points[trial.trial_id] = {o: float(last[o]) for o in self.objectives}
        ids = list(self.points)
        front = [ids[i] for i in pareto_front([self.points[t] for t in ids], self.objectives)]
        q, now = self.queue(trial), int(time.time() * 1000)
        for tid in set(front) | set(self.on_front):
            q.put("log_batch", run=self.ref_of(tid), tags={FRONT_TAG: "true" if tid in front else "false"})
        self.on_front = front
        table = front_table([{"trial_id": t, "values": self.points[t]} for t in front], list(self.objectives),
                            self.objectives)
        q.put("text", run=self.parent_run_id, text=table, path=FRONT_TABLE)
        q.put("log_batch", run=self.parent_run_id, metrics=[["pareto_front_size", float(len(front)), now, len(ids)]])

    def _best_so_far(self, trial: Any) -> None:
        """Log the sweep's best value so far on the parent run, one point per trial that ran to its end (the
        MLflow UI draws it against the finished-trial count while the sweep runs); early-stopped trials hold
        values of a shorter run and do not count, as for the sweep's best config."""
        staged_best = self.best.get(trial.trial_id, {}).get("value")
        value = staged_best if staged_best is not None else (trial.last_result or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)) or trial.trial_id in self.finished:
            return
        self.finished[trial.trial_id] = float(value)
        q, now = self.queue(trial), int(time.time() * 1000)
        if self.seeds > 1:
            self._group_so_far(q, trial.trial_id, now)
            return
        pick = max if self.mode == "max" else min
        best_id = pick(self.finished, key=self.finished.__getitem__)
        q.put("log_batch", run=self.parent_run_id, metrics=[
            [f"best_so_far_{self.metric}", self.finished[best_id], now, len(self.finished)]],
            tags={"fgi.best_so_far_trial": best_id})

    def _group_so_far(self, q: LogQueue, tid: str, now: int) -> None:
        """When ``tid`` completes its group: the group's mean and spread on its children, and the parent's
        best-so-far over the whole groups, one point per whole group."""
        if tid not in self.groups:
            return
        items = [(*self.groups[t], t, v) for t, v in self.finished.items() if t in self.groups]
        whole = group_scores(((g, t, seed, v) for g, seed, t, v in items), self.seeds)
        done = next((g for g in whole if g.group == self.groups[tid][0]), None)
        if done is None:
            return
        for member, _, _ in done.members:
            q.put("log_batch", run=self.ref_of(member), metrics=[
                [f"seed_mean_{self.metric}", done.mean, now, 0], [f"seed_std_{self.metric}", done.std, now, 0]])
        best = best_group(whole, self.mode)
        q.put("log_batch", run=self.parent_run_id, metrics=[
            [f"best_so_far_{self.metric}", best.mean, now, len(whole)],
            [f"best_so_far_{self.metric}_seed_std", best.std, now, len(whole)]],
            tags={"fgi.best_so_far_group": best.group, "fgi.best_so_far_trial": best.members[0][0]})

    def ref_of(self, trial_id: str) -> dict[str, str]:
        """``ref`` of a trial known by its id."""
        return {"exp": self.experiment_id, "sweep": self.sweep, "trial": trial_id, "parent": self.parent_run_id}

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.error_file and Path(trial.error_file).is_file():
            self._open(trial).put("files", run=self.ref(trial), local=str(trial.error_file), path="error")
        self._end(trial, "FAILED", "failed")


OPEN_CHILDREN: dict[str, dict[str, dict[str, str]]] = {}  # parent run -> trial id -> run ref, of unfinished trials
UNFINISHED: dict[str, LogQueue] = {}  # parent run id -> queue, of sweeps started and not finished


@atexit.register
def _close_unfinished() -> None:
    """A process that ends without ``SweepTracker.finish`` marks its sweep's open runs FAILED, then spools."""
    for parent, q in list(UNFINISHED.items()):
        for ref in OPEN_CHILDREN.pop(parent, {}).values():
            q.put("log_batch", run=ref, tags={OUTCOME_TAG: "failed"})
            q.put("status", run=ref, status="FAILED")
        q.put("status", run=parent, status="FAILED")
        q.close(CRASH_FLUSH_TIMEOUT_S)
        UNFINISHED.pop(parent, None)



__all__ = ["KIND_TAG", "OPEN_CHILDREN", "UNFINISHED", "OUTCOME_TAG", "PARENT_TAG", "STAGING_DIR", "SWEEP_TAG", "TRIAL_TAG",
           "TUNED_TAG", "StepFilter", "TrialLogger", "artifact_location", "default_root", "find_run", "find_runs", "metrics_of",
           "nest", "param_text"]
