"""Pickles written by the flat layout (fgi 0.1) load after the move into packages (``fgi.moved``).

``fixtures/flat_layout_state.pkl`` was written with cloudpickle (as Ray Tune and MLflow write their state)
by the code of commit 7943abc, before the move: trial settings and trainables as Tune saves them, the
Optuna define-by-run space, a Tune callback, the engine class an MLflow pyfunc model keeps, the Ray Train
worker function and the pyfunc wrapper itself.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import optuna
import pytest

from fgi.config import Config
from fgi.method.engine import TeacherStudentTrainer
from fgi.moved import MOVED
from fgi.run.worker import build_loaders
from fgi.search.console import ConsoleCallback
from fgi.search.ray_train import train_loop_per_worker
from fgi.search.space import OptunaDefineByRun
from fgi.search.trial import TrialSettings, run_distributed, run_in_process

STATE = Path(__file__).parent / "fixtures" / "flat_layout_state.pkl"


@pytest.fixture(scope="module")
def state():
    return pickle.loads(STATE.read_bytes())


def test_old_paths_resolve_to_the_moved_objects(state):
    assert isinstance(state["settings"], TrialSettings)
    assert state["settings"].base == Config() and state["settings"].keys == ("loss.tau_pos",)
    assert state["trainables"] == [run_in_process, run_distributed]
    assert state["trainer_class"] is TeacherStudentTrainer
    assert state["worker_functions"] == [train_loop_per_worker, build_loaders]
    assert isinstance(state["console"], ConsoleCallback) and state["console"].total == 4
    assert state["pyfunc"].trainer_class is TeacherStudentTrainer


def test_the_restored_space_still_suggests_configs(state):
    define_by_run = state["define_by_run"]
    assert isinstance(define_by_run, OptunaDefineByRun)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggested = define_by_run(study.ask())
    assert set(suggested) == set(define_by_run.space.keys)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_path_is_the_new_module(old):
    module = importlib.import_module(old)
    if old == "fgi.distributed":  # split in two: a shim that holds both halves' names
        assert module.train_worker is importlib.import_module("fgi.run.worker").train_worker
        assert module.fit is importlib.import_module("fgi.search.ray_train").fit
    else:
        assert module is importlib.import_module(MOVED[old])


def test_new_pickles_name_the_new_paths():
    data = pickle.dumps(TeacherStudentTrainer)
    assert b"fgi.method.engine" in data and b"fgi.engine\x94" not in data
