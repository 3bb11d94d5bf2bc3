"""Sweep options are validated up front; the sweep file round-trips and resume rebuilds the same space."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from fgi.config import ConfigError, load_yaml_text, save_yaml
from fgi.search.settings import (
    SWEEP_FILE,
    SweepOptions,
    SweepRecord,
    latest_sweep,
    new_record,
    read_sweep_file,
    saved_record,
    write_sweep_file,
)
from fgi.search.space import SearchSpaceError

# the keys of a sweep file written before SweepRecord existed (a plain dict then)
OLD_KEYS = ("dataset", "budget", "name", "base_config", "space_path", "space_text", "num_samples", "max_concurrent",
            "workers", "cpus_per_worker", "gpus_per_worker", "search", "scheduler", "grace_steps", "reduction_factor",
            "metric", "mode", "time_budget", "seed", "max_failures", "experiment", "best_dir")


@pytest.mark.parametrize("kwargs, needle", [
    ({"num_samples": 0}, "num_samples: must be > 0, got 0"),
    ({"cpus_per_worker": -1.0}, "cpus_per_worker: must be > 0"),
    ({"gpus_per_worker": -0.5}, "gpus_per_worker: must be >= 0"),
    ({"max_failures": -1}, "max_failures: must be >= 0"),
    ({"search": "grid"}, "search: 'grid' is not one of ['tpe', 'random', 'nsga2']"),
    ({"metric": "val_loss"}, "metric: 'val_loss'"),
    ({"budget": "tiny"}, "budget: unknown budget 'tiny'"),
    ({"startup_trials": 0}, "startup_trials: must be > 0, got 0"),
    ({"search": "random", "startup_trials": 2}, "startup_trials: only for search 'tpe', not 'random'"),
    ({"trial_timeout": -5.0}, "trial_timeout: must be >= 0, got -5.0"),
    ({"trial_timeout": float("nan")}, "trial_timeout: must be a finite number of seconds (0 disables), got nan"),
    ({"trial_timeout": float("inf")}, "trial_timeout: must be a finite number of seconds (0 disables), got inf"),
])
def test_options_name_the_bad_option(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        SweepOptions(dataset="synthetic", **kwargs)
    assert needle in str(err.value), str(err.value)


def test_new_record_takes_the_budget_defaults(tmp_path):
    record, space = new_record(SweepOptions(dataset="synthetic", budget="smoke", seed=7, name="s"))
    base = load_yaml_text(record.base_config)
    assert base == space.base and base.train.seed == 7 and base.data.image_size == 32 and base.train.max_steps == 12
    assert (record.num_samples, record.grace_steps, record.reduction_factor) == (3, base.train.eval_every, 2)
    assert record.mode == "max" and record.seed == 7 and record.experiment == "fgi-synthetic"
    assert record.space_path == "fgi/search_spaces/synthetic.yaml" and "extends" not in yaml.safe_load(record.space_text)
    default, _ = new_record(SweepOptions(dataset="synthetic", metric="val_hd95"))
    assert default.budget == "cpu" and default.num_samples == 10 and default.mode == "min"


def test_sweep_file_round_trips_and_resume_rebuilds_the_space(tmp_path):
    record, space = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="fgi-synthetic-a"))
    write_sweep_file(str(tmp_path), record)
    assert read_sweep_file(str(tmp_path), "fgi-synthetic-a") == record
    assert latest_sweep(str(tmp_path), "synthetic") == "fgi-synthetic-a"
    again, resumed = saved_record(SweepOptions(dataset="synthetic", resume=True), str(tmp_path))
    assert again == record and resumed.params == space.params and resumed.base == space.base


def test_old_sweep_files_are_read_and_bad_ones_named(tmp_path):
    record, _ = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="old"))
    old = {k: json.loads(record.to_json())[k] for k in OLD_KEYS}
    # files written before the tracking URI and storage were recorded: those read as "" (resolved afresh);
    # files written before the watchdog get the default trial timeout
    # and files written before the TPE start-up was recorded ran Optuna's default of 10 random trials
    assert SweepRecord.from_json(json.dumps(old), "old.json") == dataclasses.replace(record, startup_trials=10)
    assert record.trial_timeout == 1800.0
    del old["seed"]
    with pytest.raises(ConfigError, match=r"old.json: missing sweep settings \['seed'\]"):
        SweepRecord.from_json(json.dumps(old), "old.json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        SweepRecord.from_json("{", "bad.json")
    with pytest.raises(ConfigError, match=f"{SWEEP_FILE} not found"):
        read_sweep_file(str(tmp_path), "nothing")
    with pytest.raises(ConfigError, match="no fgi-kvasir-\\* sweep"):
        latest_sweep(str(tmp_path), "kvasir")


def test_config_and_space_of_the_wrong_kind_fail_before_anything_starts(tmp_path):
    from fgi.config import Config, override

    other = tmp_path / "kvasir.yaml"
    save_yaml(override(Config(), {"data.dataset": "kvasir"}), other)
    with pytest.raises(ConfigError, match="config: .* is for dataset 'kvasir', not 'synthetic'"):
        new_record(SweepOptions(dataset="synthetic", config=str(other)))
    bad = tmp_path / "space.yaml"
    bad.write_text("params:\n  loss.tau_pos: {distribution: uniform, low: 0.85, high: 0.9}\n")
    with pytest.raises(SearchSpaceError, match="space.yaml: loss.tau_pos: the base configuration's value 0.8"):
        new_record(SweepOptions(dataset="synthetic", space=str(bad)))


@pytest.mark.parametrize("name", ["a/b", "..", "x..y", "a b", "", "é", ".hidden"])
def test_unsafe_sweep_names_are_refused(name):
    with pytest.raises(ConfigError, match="^name: .* is not a safe name"):
        SweepOptions(dataset="synthetic", name=name)
    assert SweepOptions(dataset="synthetic", name="fgi-kvasir_cpu.2").name == "fgi-kvasir_cpu.2"


def test_missing_data_paths_fail_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError, match=f"--data-root: {tmp_path}/absent not found \\(data.root\\)"):
        new_record(SweepOptions(dataset="kvasir", root=str(tmp_path / "absent")))
    record, space = new_record(SweepOptions(dataset="kvasir", root=str(tmp_path)))
    assert space.base.data.root == str(tmp_path)


def test_the_record_keeps_tracking_and_storage_and_resume_refuses_others(tmp_path, monkeypatch):
    monkeypatch.setenv("FGI_HOME", str(tmp_path / "home"))
    record, _ = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="r"), "sqlite:///a.db", str(tmp_path))
    assert record.best_dir == str(tmp_path / "home" / "best_configs")
    assert (record.mlflow_uri, record.storage) == ("sqlite:///a.db", str(tmp_path))
    write_sweep_file(str(tmp_path), record)
    again, _ = saved_record(SweepOptions(dataset="synthetic", resume=True, name="r"), str(tmp_path))
    assert again.mlflow_uri == "sqlite:///a.db"
    for kwargs, flag in (({"mlflow_uri": "sqlite:///b.db"}, "mlflow_uri"), ({"experiment": "other"}, "experiment")):
        with pytest.raises(ConfigError, match=f"^{flag}: sweep r was started with"):
            saved_record(SweepOptions(dataset="synthetic", resume=True, name="r", **kwargs), str(tmp_path))
    moved = tmp_path / "moved"
    write_sweep_file(str(moved), record)
    with pytest.raises(ConfigError, match="^storage: sweep r was started with"):
        saved_record(SweepOptions(dataset="synthetic", resume=True, name="r", storage=str(moved)), str(moved))


def test_the_trial_timeout_is_recorded_tracked_and_kept_by_resume(tmp_path):
    record, _ = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="w", trial_timeout=90.0))
    assert record.trial_timeout == 90.0 and record.tracked_settings()["trial_timeout"] == 90.0
    write_sweep_file(str(tmp_path), record)
    assert json.loads((tmp_path / "w" / SWEEP_FILE).read_text())["trial_timeout"] == 90.0
    again, _ = saved_record(SweepOptions(dataset="synthetic", resume=True, name="w"), str(tmp_path))
    assert again.trial_timeout == 90.0
    off, _ = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="off", trial_timeout=0.0))
    assert off.trial_timeout == 0.0


@pytest.mark.parametrize("budget, trials, startup", [("smoke", None, 1), ("cpu", None, 3), ("full", None, 10),
                                                     ("cpu", 100, 10)])
def test_tpe_models_after_a_third_of_the_trials_at_most_ten(budget, trials, startup):
    record, _ = new_record(SweepOptions(dataset="synthetic", budget=budget, num_samples=trials, name="t"))
    assert record.startup_trials == startup and record.tracked_settings()["startup_trials"] == startup


def test_a_given_startup_is_kept_by_resume(tmp_path):
    record, _ = new_record(SweepOptions(dataset="synthetic", budget="smoke", name="s", startup_trials=2))
    write_sweep_file(str(tmp_path), record)
    again, _ = saved_record(SweepOptions(dataset="synthetic", resume=True, name="s"), str(tmp_path))
    assert again.startup_trials == 2


def test_a_name_too_long_for_a_folder_is_refused_before_anything_starts():
    with pytest.raises(ConfigError, match="^name: 300 characters; at most 200"):
        SweepOptions(dataset="synthetic", name="a" * 300)
    assert SweepOptions(dataset="synthetic", name="a" * 200).name == "a" * 200


def test_seeds_per_trial_needs_no_early_stopping_and_tpe():
    from fgi.fields import OptionError
    from fgi.search.settings import SweepOptions

    with pytest.raises(OptionError, match="seeds_per_trial.*needs scheduler 'none', not 'asha'"):
        SweepOptions(dataset="synthetic", seeds_per_trial=2)
    with pytest.raises(OptionError, match="seeds_per_trial.*only for search 'tpe', not 'random'"):
        SweepOptions(dataset="synthetic", seeds_per_trial=2, scheduler="none", search="random")
    with pytest.raises(OptionError, match="seeds_per_trial"):
        SweepOptions(dataset="synthetic", seeds_per_trial=0)
    assert SweepOptions(dataset="synthetic", seeds_per_trial=3, scheduler="none").seeds_per_trial == 3


def test_a_final_stage_takes_its_seeds_from_seeds_per_trial():
    from fgi.fields import OptionError
    from fgi.search.settings import SweepOptions

    final = {"dataset": "synthetic", "final_stage": ("somewhere",), "rank_step": 8}
    assert SweepOptions(**final).final_seeds(7) == (0, 1)
    assert SweepOptions(**final, seeds_per_trial=3).final_seeds(7) == (7, 8, 9)
    assert SweepOptions(**final, stage_seeds=(4, 2)).final_seeds(7) == (4, 2)
    with pytest.raises(OptionError, match="3 seeds, but stage_seeds lists 2"):
        SweepOptions(**final, seeds_per_trial=3, stage_seeds=(4, 2))


@pytest.mark.parametrize(("extra", "option", "message"), [
    ({}, "scheduler", "not with several objectives"),
    ({"scheduler": "none", "search": "random"}, "search", "multi-objective searchers are"),
    ({"scheduler": "none", "seeds_per_trial": 2}, "seeds_per_trial", "seed groups average one metric"),
    ({"scheduler": "none", "warm_start": ("x",)}, "warm_start", "told one value each"),
])
def test_several_objectives_refuse_what_ranks_on_one(extra, option, message):
    from fgi.fields import OptionError
    from fgi.search.settings import SweepOptions

    with pytest.raises(OptionError, match=f"{option}.*{message}"):
        SweepOptions(dataset="synthetic", objectives=("val_dice", "infer_ms"), **extra)


def test_objectives_are_distinct_known_metrics_led_by_the_metric():
    from fgi.fields import OptionError
    from fgi.search.settings import SweepOptions

    ok = {"dataset": "synthetic", "scheduler": "none"}
    assert SweepOptions(**ok, objectives=("val_dice", "val_hd95", "infer_mparams")).objectives[2] == "infer_mparams"
    with pytest.raises(OptionError, match="two or more different objectives"):
        SweepOptions(**ok, objectives=("val_dice", "val_dice"))
    with pytest.raises(OptionError, match="'speed' is not one of"):
        SweepOptions(**ok, objectives=("val_dice", "speed"))
    with pytest.raises(OptionError, match="first objective 'val_hd95' is the sweep's metric, not 'val_dice'"):
        SweepOptions(**ok, objectives=("val_hd95", "val_dice"))
