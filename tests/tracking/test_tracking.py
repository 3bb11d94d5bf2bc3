"""Tracking against a real local MLflow store (SQLite, in process): runs, tags, params, checkpoints, filters."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from fgi import tracking
from fgi.config import Config
from fgi.tracking.trials import find_runs


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds); tests use their own names."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'mlflow.db'}"


def _db(uri):
    Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def _trial(tid, config, storage_dir, steps, checkpoint=None):
    return SimpleNamespace(trial_id=tid, config=config, num_failures=0, error_file=None, checkpoint=checkpoint,
                           last_result={"step": steps}, storage=None)


def _state_file(path: Path, marker: bytes) -> None:
    """A whole zip archive, as torch.save writes ``trainer.pt``, holding ``marker`` (staging verifies archives)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("marker", marker)


def _marker(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read("marker")


def _checkpoint(folder, step, dice):
    folder.mkdir(parents=True)
    _state_file(folder / "trainer.pt", b"w%d" % step)
    (folder / "metrics.json").write_text(f'{{"step": {step}, "val_dice": {dice}}}')
    return str(folder)


def test_experiment_is_model_development_with_artifacts_beside_the_database(store):
    uri = _db(store)
    exp_id = tracking.experiment_id(uri, "exp a/../b")
    exp = MlflowClient(uri).get_experiment(exp_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    db_dir = Path(uri.removeprefix("sqlite:///")).parent
    assert exp.artifact_location == (db_dir / "mlartifacts" / "exp_a____b").as_uri()


def test_a_crafted_sweep_name_matches_only_its_own_parent(store, tmp_path):
    uri = _db(store)
    names = ["o'brien", "x' or tags.`fgi.kind` = 'sweep", 'quote"d\\', "plain"]
    ids = {}
    for name in names:
        t = tracking.SweepTracker(uri, "names", name, "synthetic", storage=tmp_path / "sweep")
        ids[name] = t.start("params: {}", Config(), {})
        t.finish(None, None, None)
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("names").experiment_id
    for name in names:
        found = find_runs(client, exp_id, {"fgi.sweep": name, "fgi.kind": "sweep"})
        assert [r.info.run_id for r in found] == [ids[name]], name
    assert find_runs(client, exp_id, {"fgi.sweep": "o'brien' or '1'='1"}) == []


def test_trials_log_tuned_params_curves_and_their_staged_best_checkpoint(store, tmp_path):
    uri = _db(store)
    tracker = tracking.SweepTracker(uri, "exp", "sw", "synthetic", storage=tmp_path / "sweep")
    parent = tracker.start("params: {}", Config(), {"num_samples": 2})
    full = {"optim.lr": 0.1, "loss.tau_pos": 0.8, "train.max_steps": 12}
    cb = tracking.TrialCallback(uri, tracker.experiment_id, parent, "sw", lambda c: {**full, **{k: v for k, v in c.items() if "|" not in k}}, 12,
                                staging=tmp_path / "sweep" / "staging")
    early = _trial("a", {"optim.lr": 0.01, "loss.tau_pos|fraction": 0.5, "loss.tau_pos": 0.7}, tmp_path, 4)
    done = _trial("b", {"optim.lr": 0.02, "loss.tau_pos|fraction": 0.1, "loss.tau_pos": 0.65}, tmp_path, 12)
    for t in (early, done):
        cb.on_trial_start(0, [], t)
    ck = {s: _checkpoint(tmp_path / "tune" / f"ck{s}", s, d) for s, d in ((4, 0.3), (8, 0.6), (12, 0.5))}
    cb.on_trial_result(0, [], early, {"step": 4, "val_dice": 0.2, "loss": 1.0, "checkpoint_path": ck[4]})
    for s, d in ((4, 0.3), (8, 0.6), (12, 0.5)):
        cb.on_trial_result(0, [], done, {"step": s, "val_dice": d, "loss": 1.0 / s, "checkpoint_path": ck[s]})
    cb.on_trial_result(0, [], done, {"step": 8, "val_dice": 0.6})  # a replayed report is not logged twice
    shutil.rmtree(tmp_path / "tune")  # Tune's num_to_keep removes the originals before the trials end
    cb.on_trial_complete(0, [], early)
    cb.on_trial_complete(0, [], done)
    assert tracker.finish({"step": 8, "val_dice": 0.6, "trial_id": "b"}, None, None) == 0

    client = MlflowClient(uri)
    runs = {r.data.tags["fgi.trial_id"]: r for r in find_runs(client, tracker.experiment_id, {"fgi.sweep": "sw"})
            if r.data.tags["fgi.kind"] == "trial"}
    a, b = runs["a"], runs["b"]
    assert a.info.status == "FINISHED" and a.data.tags["fgi.outcome"] == "stopped_early"
    assert b.info.status == "FINISHED" and b.data.tags["fgi.outcome"] == "finished"
    assert b.data.params == {"optim.lr": "0.02", "loss.tau_pos": "0.65"}
    assert b.data.tags["fgi.tuned_params"] == "loss.tau_pos,optim.lr"
    assert b.data.tags["mlflow.parentRunId"] == parent
    config = Path(client.download_artifacts(b.info.run_id, "config.yaml", str(tmp_path))).read_text()
    assert "max_steps: 12" in config and "lr: 0.02" in config
    assert [m.step for m in client.get_metric_history(b.info.run_id, "val_dice")] == [4, 8, 12]
    assert b.data.tags["fgi.best_step"] == "8" and b.data.metrics["best_val_dice"] == 0.6
    got = Path(client.download_artifacts(b.info.run_id, "checkpoint/trainer.pt", str(tmp_path / "dl")))
    assert _marker(got) == b"w8"
    p = client.get_run(parent)
    assert p.info.status == "FINISHED"
    assert p.data.tags["fgi.best_trial_run_id"] == b.info.run_id and p.data.tags["fgi.best_val_dice"] == "0.6"


def test_a_resumed_driver_does_not_log_a_step_its_trial_run_already_holds(store):
    """A trial resumed from a checkpoint older than its last logged point reports that point again; the new
    driver's executor finds the run by its tags and keeps one point per step."""
    uri = _db(store)
    client = MlflowClient(uri)
    exp = client.create_experiment("resumed-points")
    ref = {"exp": exp, "sweep": "sw-r", "trial": "t", "parent": "p"}

    def batch(*steps, at=1000):  # a report again: the same step at a later time, with the resumed run's value
        return {"run": ref, "metrics": [[k, 0.1 * s + at / 1e6, at + s, s] for s in steps for k in ("val_dice", "loss")]}

    before = tracking.Executor(uri)
    before("log_batch", batch(4, 8, 12))
    after = tracking.Executor(uri)  # the resumed driver: a new process, a new executor
    after("log_batch", batch(12, at=2000))
    after("log_batch", batch(16, at=2000))
    after("log_batch", batch(16, at=3000))
    run = before.run_id(ref)
    assert after.run_id(ref) == run
    for key in ("val_dice", "loss"):
        assert [m.step for m in client.get_metric_history(run, key)] == [4, 8, 12, 16]


def test_reconcile_closes_children_tune_does_not_hold_as_live(store, tmp_path):
    uri = _db(store)
    tracker = tracking.SweepTracker(uri, "exp", "sw2", "synthetic", storage=tmp_path / "sweep")
    parent = tracker.start("params: {}", Config(), {})
    cb = tracking.TrialCallback(uri, tracker.experiment_id, parent, "sw2", dict, 12, staging=tmp_path / "st")
    for tid in ("live", "lost", "unknown"):
        cb.on_trial_start(0, [], _trial(tid, {}, tmp_path, 0))
    assert tracker.queue.flush(60)
    closed = tracking.reconcile(uri, tracker.experiment_id, "sw2", {"live": "RUNNING", "lost": "TERMINATED"})
    client = MlflowClient(uri)
    runs = {r.data.tags["fgi.trial_id"]: r for r in find_runs(client, tracker.experiment_id, {"fgi.sweep": "sw2", "fgi.kind": "trial"})}
    assert sorted(closed) == sorted([runs["lost"].info.run_id, runs["unknown"].info.run_id])
    assert runs["live"].info.status == "RUNNING"
    assert runs["lost"].info.status == "KILLED" and runs["lost"].data.tags["fgi.outcome"] == "orphaned"
    tracker.finish(None, None, None, failed=True)


def test_after_a_resume_the_checkpoint_on_disk_is_uploaded_and_a_lost_one_fails_nothing(store, tmp_path):
    uri = _db(store)
    tracker = tracking.SweepTracker(uri, "exp", "sw3", "synthetic", storage=tmp_path / "sweep")
    parent = tracker.start("params: {}", Config(), {})
    cb = tracking.TrialCallback(uri, tracker.experiment_id, parent, "sw3", dict, 12, staging=tmp_path / "staging")
    # restored state names a best (0.9 at step 8) whose staged copy is gone; the latest checkpoint on disk is step 12
    cb.set_state({"best": {"r": {"value": 0.9, "step": 8}}, "last_step": {"r": 12}})
    on_disk = _checkpoint(tmp_path / "tune" / "ck12", 12, 0.4)
    resumed = _trial("r", {}, tmp_path, 12, checkpoint=SimpleNamespace(path=on_disk))
    gone = _trial("g", {}, tmp_path, 12, checkpoint=SimpleNamespace(path=str(tmp_path / "deleted")))
    late = _trial("l", {}, tmp_path, 12)
    for t in (resumed, gone, late):
        cb.on_trial_start(0, [], t)
    cb.on_trial_result(0, [], late, {"step": 4, "val_dice": 0.5, "checkpoint_path": _checkpoint(tmp_path / "tune" / "l4", 4, 0.5)})
    assert tracker.queue.flush(60)
    shutil.rmtree(tmp_path / "staging" / "l")  # the staged copy vanishes: nothing to pair, nothing uploaded
    for t in (resumed, gone, late):
        cb.on_trial_complete(0, [], t)
    tracker.finish(None, None, None)

    client = MlflowClient(uri)
    runs = {r.data.tags["fgi.trial_id"]: r for r in find_runs(client, tracker.experiment_id, {"fgi.sweep": "sw3"})
            if r.data.tags["fgi.kind"] == "trial"}
    r = runs["r"]
    assert r.data.tags["fgi.best_step"] == "12" and r.data.metrics["best_val_dice"] == 0.4
    assert [a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")] == ["checkpoint/metrics.json",
                                                                                    "checkpoint/trainer.pt"]
    for tid in ("g", "l"):
        assert runs[tid].info.status == "FINISHED" and "fgi.best_step" not in runs[tid].data.tags
        assert client.list_artifacts(runs[tid].info.run_id, "checkpoint") == []


def _sweep(uri, tmp_path, name, budget, best, text, failed=False):
    t = tracking.SweepTracker(uri, "best-pick", name, "synthetic", storage=tmp_path / name)
    t.start("params: {}", Config(), {"budget": budget, "metric": "val_dice"})
    t.finish(best, text, None, failed=failed)
    return t.parent_run_id


def test_best_config_comes_from_the_best_finished_sweep_not_the_newest(store, tmp_path):
    uri = _db(store)
    texts = {n: f"# fgi best config of sweep {n}\ndata:\n  dataset: synthetic\n  tight_level: 0.{i + 5}\n"
             for i, n in enumerate(("long", "crashed", "smoke", "bare"))}
    long = _sweep(uri, tmp_path, "long", "cpu", {"step": 60, "val_dice": 0.7, "val_hd95": 9.0}, texts["long"])
    _sweep(uri, tmp_path, "crashed", "cpu", {"step": 60, "val_dice": 0.95, "val_hd95": 0.5}, texts["crashed"], failed=True)
    smoke = _sweep(uri, tmp_path, "smoke", "smoke", {"step": 12, "val_dice": 0.4, "val_hd95": 3.0}, texts["smoke"])
    _sweep(uri, tmp_path, "bare", "cpu", {"step": 60, "val_dice": 0.99, "val_hd95": 1.0}, None)  # no best config

    best = tracking.fetch_best_config(uri, "best-pick")
    assert (best.sweep, best.run_id, best.value, best.budget) == ("long", long, 0.7, "cpu")
    assert best.text == texts["long"], "the logged best config is the portable text, verbatim"
    assert best.ranked == 3  # long, smoke, bare: FINISHED with best_val_dice; crashed is FAILED
    assert "sweep long" in best.describe() and "0.7000" in best.describe()

    lowest_hd95 = tracking.fetch_best_config(uri, "best-pick", metric="val_hd95", mode="min")
    assert (lowest_hd95.sweep, lowest_hd95.value) == ("smoke", 3.0)
    assert tracking.fetch_best_config(uri, "best-pick", budget="smoke").run_id == smoke
    named = tracking.fetch_best_config(uri, "best-pick", sweep="crashed")
    assert named.sweep == "crashed" and named.text == texts["crashed"] and "named with --sweep" in named.describe()
    with pytest.raises(LookupError, match=r"no sweep 'nope'.*\['bare', 'crashed', 'long', 'smoke'\]"):
        tracking.fetch_best_config(uri, "best-pick", sweep="nope")
    with pytest.raises(LookupError, match="no FINISHED sweep of budget 'full'"):
        tracking.fetch_best_config(uri, "best-pick", budget="full")


def _checkpoint_folder(folder):
    folder.mkdir(parents=True)
    _state_file(folder / "trainer.pt", b"weights")
    (folder / "normalization.json").write_text('{"mean": [0.5], "std": [0.5]}')
    return folder


def test_registering_moves_an_alias_only_when_asked_and_tags_the_budget(store, tmp_path):
    uri = _db(store)
    from fgi.method.engine import TeacherStudentTrainer

    client = MlflowClient(uri, registry_uri=uri)
    folder = _checkpoint_folder(tmp_path / "ck")
    versions = []
    for aliases, budget in ((["champion", "full-run"], "full"), ([], "smoke"), (["champion"], "cpu")):
        run = tracking.start_final_run(uri, "final", Config(), f"final-{budget}", "test")
        versions.append(tracking.register_model(uri, run, folder, "fgi-alias-test", TeacherStudentTrainer,
                                                aliases=aliases, tags={"fgi.budget": budget}))
        if len(versions) == 2:  # the smoke run registered without --alias: champion still names the first
            assert str(client.get_model_version_by_alias("fgi-alias-test", "champion").version) == versions[0]
    assert versions == ["1", "2", "3"]
    assert str(client.get_model_version_by_alias("fgi-alias-test", "champion").version) == "3"
    assert str(client.get_model_version_by_alias("fgi-alias-test", "full-run").version) == "1"
    assert client.get_model_version("fgi-alias-test", "2").tags == {"fgi.budget": "smoke"}
    assert client.get_model_version("fgi-alias-test", "2").aliases == []


def test_registering_and_fetching_leave_the_process_wide_mlflow_settings_alone(store, tmp_path, monkeypatch):
    import mlflow

    from fgi.method.engine import TeacherStudentTrainer

    uri = _db(store)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    before = mlflow.get_tracking_uri()
    run = tracking.start_final_run(uri, "final-uri", Config(), "final-uri", "test")
    version = tracking.register_model(uri, run, _checkpoint_folder(tmp_path / "ck"), "fgi-uri-test", TeacherStudentTrainer)
    with tracking.fetch_model(f"models:/fgi-uri-test/{version}", uri) as folder:
        assert (folder / "trainer.pt").is_file()
    # a later resolve_uri() without a URI is the default store again, not the store used last
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before != uri
