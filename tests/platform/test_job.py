"""The product path against real servers: `ray job submit -- python tune.py`, MLflow, `train.py`, `fgi predict`.

Also the headless-Chromium checks of the MLflow UI (the runs page and the compare view of the trials),
which reuse the sweep this test makes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from fgi_platform import BIN, run_cli, submit_job, wait_job
from PIL import Image

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 900


def _submit_and_wait(head, entrypoint: list[str], timeout: float = JOB_TIMEOUT_S) -> str:
    return wait_job(head, submit_job(head, entrypoint), timeout)


@pytest.fixture(scope="module")
def sweep(ray_head, mlflow_server, tmp_path_factory):
    """One smoke sweep of 3 trials submitted as a Ray job, logged to the MLflow server.

    No early stopping: only trials that ran the whole schedule compete and feed the importances, so the
    three must all finish for the parent run's artifacts to be deterministic (ASHA is tested on its own)."""
    work = tmp_path_factory.mktemp("sweep")
    logs = _submit_and_wait(ray_head, [
        "python", "tune.py", "--dataset", "synthetic", "--budget", "smoke", "--num-samples", "3", "--scheduler", "none",
        "--mlflow-uri", mlflow_server.uri, "--storage", str(work / "storage"), "--best-dir", str(work / "best_configs"),
        "--name", "job-sweep", "--experiment", "fgi-synthetic-job"])
    return {"work": work, "logs": logs, "experiment": "fgi-synthetic-job"}


def test_job_sweep_is_tracked_in_mlflow(sweep, mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(sweep["experiment"])
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fgi.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("fgi.kind") == "trial"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    assert len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert len({c.data.tags["fgi.trial_id"] for c in children}) == 3
    assert parent.data.tags["dataset"] == "synthetic" and parent.data.tags["fgi_version"]
    from fgi.budgets import apply_budget
    from fgi.config import Config
    from fgi.search.space import dataset_space

    searched = dataset_space("synthetic", apply_budget(Config(), "smoke")).keys
    published = {"loss.tau_pos": 0.8, "loss.tau_neg": 0.2, "masking.mask_ratio": 0.3,
                 "loss.align_scales": [1, 2, 3, 4], "data.tight_level": 0.5, "data.loose_level": 0.3}
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    first_trial_seen = False
    for child in children:
        params = client.get_run(child.info.run_id).data.params
        assert set(params) == set(searched), "the params of a trial are its searched keys"
        assert child.data.tags["fgi.tuned_params"] == ",".join(sorted(searched))
        config = yaml.safe_load(Path(client.download_artifacts(child.info.run_id, "config.yaml", str(sweep["work"]))).read_text())
        flat = {f"{section}.{k}": v for section, values in config.items() for k, v in values.items()}
        assert {k: str(flat[k]) for k in searched} == {k: str(yaml.safe_load(params[k])) for k in searched}
        first_trial_seen |= all(flat[k] == v for k, v in published.items())
        outcome = child.data.tags["fgi.outcome"]
        assert outcome == "finished" and child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "val_dice")
        steps = [m.step for m in history]
        assert steps == sorted(set(steps)), "one continuous history per trial"
        if outcome == "finished":
            assert len(history) >= 2
            assert steps[-1] == 12  # smoke budget: train.max_steps
        for key in ("val_iou", "loss", "loss_cwc", "loss_align", "lr"):
            assert client.get_metric_history(child.info.run_id, key), key
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")}
        assert "checkpoint/trainer.pt" in artifacts and "checkpoint/config.yaml" in artifacts
        assert [a.path for a in client.list_artifacts(child.info.run_id, "overlay")] == ["overlay/overlay.png"]
    assert first_trial_seen, "the published configuration is one of the trials"
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "search_space.yaml", "param_importances.json", "param_importances.png"} <= parent_artifacts
    parent = client.get_run(parent.info.run_id)
    assert parent.data.metrics["best_val_dice"] > 0
    assert parent.data.tags["fgi.best_trial_run_id"] in {c.info.run_id for c in children}
    assert float(parent.data.tags["fgi.best_val_dice"]) == parent.data.metrics["best_val_dice"]
    local = sweep["work"] / "best_configs" / "synthetic.yaml"
    best = yaml.safe_load(local.read_text())
    remote = Path(client.download_artifacts(parent.info.run_id, "best_config.yaml", str(sweep["work"]))).read_text()
    # the logged best config is the local one, the portable form: a header, the method keys, no data or compute
    assert remote == local.read_text()
    assert remote.startswith("# fgi best config of sweep job-sweep") and "budget smoke" in remote
    assert "root" not in best["data"] and "image_size" not in best["data"]
    assert "max_steps" not in best.get("train", {}) and "batch_size" not in best.get("train", {})
    assert f"best config: {local}" in sweep["logs"] and "mlflow ui --backend-store-uri" in sweep["logs"]
    assert best["data"]["loose_level"] < best["data"]["tight_level"]


def test_best_train_register_predict(sweep, ray_head, mlflow_server, tmp_path):
    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    fetched = tmp_path / "best.yaml"
    chose = run_cli([str(BIN / "python"), "-m", "fgi.cli", "best", "--experiment", sweep["experiment"],
                     "--mlflow-uri", mlflow_server.uri, "--out", str(fetched)], env, 120)
    assert "chose sweep job-sweep (run " in chose.stdout and "best_val_dice" in chose.stdout, chose.stdout
    local_text = (sweep["work"] / "best_configs" / "synthetic.yaml").read_text()
    assert fetched.read_text().endswith(local_text) and fetched.read_text().startswith("# fetched by fgi best")

    out = run_cli([str(BIN / "python"), "train.py", "--config", str(fetched), "--alias", "champion",
                   "--budget", "smoke", "--mlflow-uri", mlflow_server.uri, "--storage", str(tmp_path / "storage"),
                   "--experiment", sweep["experiment"], "--name", "final"], env, JOB_TIMEOUT_S)
    registered = re.search(r"registered models:/fgi-synthetic/(\d+)", out.stdout)
    assert registered, out.stdout[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    versions = client.search_model_versions("name = 'fgi-synthetic'")
    assert versions
    new = client.get_model_version("fgi-synthetic", registered.group(1))
    assert new.tags["fgi.budget"] == "smoke" and new.tags["fgi.max_steps"] == "12"
    assert str(client.get_model_version_by_alias("fgi-synthetic", "champion").version) == registered.group(1)
    run = client.get_run(versions[0].run_id)
    for key in ("test_dice", "test_iou", "test_hd95", "test_asd", "best_val_dice", "best_val_hd95"):
        assert key in run.data.metrics
    assert run.data.metrics["best_val_dice"] == max(m.value for m in client.get_metric_history(run.info.run_id, "val_dice"))
    assert len(client.get_metric_history(run.info.run_id, "val_dice")) >= 2

    images = tmp_path / "images"
    images.mkdir()
    from fgi.data.synthetic import make_sample

    for i in range(2):
        Image.fromarray(make_sample(i, 40, 7, "test").image).save(images / f"img{i}.png")
    masks = tmp_path / "masks"
    run_cli([str(BIN / "python"), "-m", "fgi.cli", "predict", "--model", f"models:/fgi-synthetic/{versions[0].version}",
             "--images", str(images), "--out", str(masks), "--mlflow-uri", mlflow_server.uri], env, 300)
    for i in range(2):
        mask = np.asarray(Image.open(masks / f"img{i}_mask.png"))
        assert mask.shape == (40, 40) and set(np.unique(mask)) <= {0, 255}
        assert (masks / f"img{i}_overlay.png").is_file()

    scored = run_cli([str(BIN / "python"), "-m", "fgi.cli", "evaluate", "--model",
                      f"models:/fgi-synthetic/{versions[0].version}", "--mlflow-uri", mlflow_server.uri], env, 300)
    metrics = json.loads(scored.stdout[scored.stdout.index("{"):])
    assert metrics["test_dice"] == pytest.approx(run.data.metrics["test_dice"], abs=1e-6)


@contextmanager
def _chromium(tmp_path: Path) -> Iterator:
    """Headless Debian Chromium driven by chromedriver (selenium), with its profile and log in ``tmp_path``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_bin = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not chromium.exists() or not driver_bin.exists():
        pytest.fail("Debian chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    service = Service(str(driver_bin), log_output=str(tmp_path / "chromedriver.log"))
    browser = webdriver.Chrome(service=service, options=opts)
    try:
        yield browser
    finally:
        browser.quit()
        service.stop()


def _body(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def test_an_ensemble_of_the_sweeps_best_trials(sweep, ray_head, mlflow_server, tmp_path):
    """`fgi ensemble` of the sweep's best 2 trials: chosen, scored, logged under the sweep, registered, released
    at half precision, and read back by `fgi evaluate` and `fgi predict`."""
    from mlflow.tracking import MlflowClient

    env = dict(ray_head.env, RAY_ADDRESS=ray_head.gcs)
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(sweep["experiment"])
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("fgi.kind") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("fgi.kind") == "sweep")
    assert len(trials) == 3 and all(r.data.tags["fgi.outcome"] == "finished" for r in trials)
    ranked = sorted(trials, key=lambda r: -r.data.metrics["best_val_dice"])

    out = run_cli([str(BIN / "fgi"), "ensemble", "--experiment", sweep["experiment"], "--sweep", "job-sweep", "--top", "2",
                   "--out", str(tmp_path / "ensemble"), "--mlflow-uri", mlflow_server.uri], env, JOB_TIMEOUT_S).stdout
    assert "registered as fgi-synthetic-ensemble version 1" in out, out
    info = json.loads((tmp_path / "ensemble" / "ensemble.json").read_text())
    assert [m["run_id"] for m in info["members"]] == [r.info.run_id for r in ranked[:2]]
    for member, trial in zip(info["members"], ranked, strict=False):
        # the member's val Dice, scored image-only here, is the Dice its trial logged for that checkpoint
        assert member["metrics"]["val_dice"] == pytest.approx(trial.data.metrics["best_val_dice"], abs=1e-4)

    run = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "ensemble")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
    assert json.loads(run.data.params["ensemble.members"]) == [m["run_id"] for m in info["members"]]
    assert run.data.metrics["val_dice"] == pytest.approx(info["val"]["val_dice"])
    assert run.data.metrics["val_dice_gain_ci_low"] <= run.data.metrics["val_dice_gain"] \
        <= run.data.metrics["val_dice_gain_ci_high"]
    report = open(client.download_artifacts(run.info.run_id, "ensemble.md", str(tmp_path / "dl"))).read()
    assert "| member | trial | run |" in report

    # the registered model is the same ensemble: fgi evaluate on val gives the Dice fgi ensemble logged
    scored = run_cli([str(BIN / "fgi"), "evaluate", "--model", "models:/fgi-synthetic-ensemble/1", "--split", "val",
                      "--mlflow-uri", mlflow_server.uri], env, JOB_TIMEOUT_S).stdout
    assert json.loads(scored)["val_dice"] == pytest.approx(info["val"]["val_dice"], abs=1e-6)

    # a half-precision release of it: smaller, same val Dice to 3 decimals, and fgi predict reads it
    released = run_cli([str(BIN / "fgi"), "release", "--model", str(tmp_path / "ensemble"), "--out",
                        str(tmp_path / "released")], env, JOB_TIMEOUT_S).stdout
    assert "(release, fp16)" in released, released
    size = sum(p.stat().st_size for p in (tmp_path / "released").rglob("*.pt"))
    assert size < 0.6 * sum(p.stat().st_size for p in (tmp_path / "ensemble").rglob("*.pt"))
    images = tmp_path / "synth"
    run_cli([str(BIN / "fgi"), "synth", "--out", str(images), "--budget", "smoke", "--train", "2", "--val", "2",
             "--test", "2"], env, JOB_TIMEOUT_S)
    run_cli([str(BIN / "fgi"), "predict", "--model", str(tmp_path / "released"), "--images",
             str(images / "images"), "--out", str(tmp_path / "masks")], env, JOB_TIMEOUT_S)
    assert len(list((tmp_path / "masks").glob("*_mask.png"))) == len(list((images / "images").iterdir()))


def test_mlflow_ui_shows_trials(sweep, mlflow_server, tmp_path):
    """Headless Chromium opens the experiment's runs page; the trial runs are listed; a screenshot is saved."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(sweep["experiment"])
    trial_names = sorted(r.info.run_name for r in client.search_runs([exp.experiment_id])
                         if r.data.tags.get("fgi.kind") == "trial")
    with _chromium(tmp_path) as browser:
        browser.get(f"{mlflow_server.uri}/#/experiments/{exp.experiment_id}/runs")

        parent = next(r.info.run_name for r in client.search_runs([exp.experiment_id])
                      if r.data.tags.get("fgi.kind") == "sweep")
        WebDriverWait(browser, 90).until(lambda drv: parent in _body(drv))
        # trial runs are nested under the sweep run, collapsed: expand the parent's row
        for button in browser.find_elements(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"):
            button.click()
        for button in browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
            button.click()  # the assistant side panel, so the table gets the width
        WebDriverWait(browser, 60).until(lambda drv: all(name in _body(drv) for name in trial_names))
        time.sleep(1)
        # the screenshot stays in the test's folder: a test never writes to a tracked file
        png = browser.get_screenshot_as_png()
        (tmp_path / "mlflow_ui.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_the_parent_run_shows_the_best_so_far_as_trials_finish(sweep, mlflow_server, tmp_path):
    """The parent run's ``best_so_far_val_dice`` gets one point per finished trial, when it finishes (the live
    view of a running sweep in the MLflow UI), and the parent's page in Chromium shows it."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.support.ui import WebDriverWait

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(sweep["experiment"])
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("fgi.kind") == "sweep")
    trials = sorted((r for r in runs if r.data.tags.get("fgi.kind") == "trial"), key=lambda r: r.info.end_time)
    history = sorted(client.get_metric_history(parent.info.run_id, "best_so_far_val_dice"), key=lambda m: m.step)
    assert [m.step for m in history] == [1, 2, 3]
    # in the order the trials ended: the running best of their best val Dice
    running = np.maximum.accumulate([r.data.metrics["best_val_dice"] for r in trials])
    assert [m.value for m in history] == pytest.approx(list(running))
    assert history[-1].value == pytest.approx(parent.data.metrics["best_val_dice"])
    best_trial = max(trials, key=lambda r: r.data.metrics["best_val_dice"])
    assert parent.data.tags["fgi.best_so_far_trial"] == best_trial.data.tags["fgi.trial_id"]
    # logged as each trial finished, not at the sweep's end: the first point came before the last trial ended
    assert history[0].timestamp < trials[-1].info.end_time
    with _chromium(tmp_path) as browser:
        browser.get(f"{mlflow_server.uri}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}")
        WebDriverWait(browser, 90).until(lambda drv: "best_so_far_val_dice" in _body(drv))


def test_mlflow_compare_view_shows_the_tuned_params(sweep, mlflow_server, tmp_path):
    """The compare-runs page of the sweep's trials lists the tuned parameters, not the whole config."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.support.ui import WebDriverWait

    from fgi.config import Config, flatten
    from fgi.search.space import space_from_text

    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(sweep["experiment"])
    trials = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("fgi.kind") == "trial"]
    tuned = set(trials[0].data.tags["fgi.tuned_params"].split(","))
    assert all(set(r.data.params) == tuned for r in trials), "a trial's params are exactly its tuned keys"
    logged = client.download_artifacts(trials[0].data.tags["mlflow.parentRunId"], "search_space.yaml", str(tmp_path))
    space = space_from_text(Path(logged).read_text(), Config(), "search_space.yaml of the sweep")
    assert tuned == set(space.keys) and 2 <= len(tuned) < len(flatten(Config())) / 4
    untuned = sorted(set(flatten(Config())) - tuned)
    runs = json.dumps([r.info.run_id for r in trials])
    with _chromium(tmp_path) as browser:
        # MLflow 3's compare route (Routes.getCompareRunPageRoute): #/compare-runs?runs=[ids]&experiments=[ids]
        browser.get(f"{mlflow_server.uri}/#/compare-runs?runs={runs}&experiments={json.dumps([exp.experiment_id])}")
        WebDriverWait(browser, 90).until(lambda drv: all(r.info.run_name in _body(drv) for r in trials))
        WebDriverWait(browser, 60).until(lambda drv: all(key in _body(drv) for key in tuned))
        page = _body(browser)
        (tmp_path / "mlflow_compare.png").write_bytes(browser.get_screenshot_as_png())
    assert not [key for key in untuned if re.search(rf"(^|\s){re.escape(key)}(\s|$)", page)], "only tuned params"
