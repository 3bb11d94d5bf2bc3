"""ASHA's rungs survive a killed sweep: saved as callback state, set back into a fresh scheduler."""

from __future__ import annotations

import pytest
from ray import cloudpickle, tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from fgi.search.asha import RungState


def _asha(grace: int = 2) -> ASHAScheduler:
    return ASHAScheduler(time_attr="step", max_t=8, grace_period=grace, reduction_factor=2, metric="val_dice", mode="max")


def _trial(trial_id: str, scheduler: ASHAScheduler) -> Trial:
    trial = Trial("fn", stub=True, trial_id=trial_id)
    scheduler.on_trial_add(None, trial)
    return trial


def _report(scheduler: ASHAScheduler, trial: Trial, step: int, dice: float) -> str:
    return scheduler.on_trial_result(None, trial, {"step": step, "val_dice": dice})


def test_restored_rungs_cut_new_trials_as_before_the_kill():
    before = _asha()
    a, b = _trial("a", before), _trial("b", before)
    assert _report(before, a, 2, 0.80) == TrialScheduler.CONTINUE
    assert _report(before, b, 2, 0.90) == TrialScheduler.CONTINUE
    assert _report(before, a, 4, 0.85) == TrialScheduler.CONTINUE
    saved = RungState(before).get_state()

    # without the saved rungs a resumed sweep's ASHA has nothing to cut against
    fresh = _asha()
    assert _report(fresh, _trial("c", fresh), 2, 0.50) == TrialScheduler.CONTINUE

    resumed = _asha()
    RungState(resumed).set_state(saved)
    # a new trial below the step-2 cutoff of a and b (their median, 0.85) stops
    assert _report(resumed, _trial("c", resumed), 2, 0.50) == TrialScheduler.STOP
    # trial b, resumed from its step-2 checkpoint, goes on to the step-4 rung, where a's 0.85 is recorded
    b_again = _trial("b", resumed)
    assert _report(resumed, b_again, 4, 0.60) == TrialScheduler.STOP
    assert RungState(resumed).get_state()["brackets"][0][-1]["recorded"] == {"a": 0.80, "b": 0.90, "c": 0.50}


def test_rungs_of_another_grace_period_are_refused():
    saved = RungState(_asha(grace=2)).get_state()
    with pytest.raises(ValueError, match=r"saved at milestones \[\[8, 4, 2\]\], the resumed sweep's are \[\[8, 4\]\]"):
        RungState(_asha(grace=4)).set_state(saved)


def test_the_tuner_state_keeps_callback_and_scheduler_joined(tmp_path):
    """What Tune writes to tuner.pkl and reads back on restore: the callback still holds the scheduler Tune runs."""
    scheduler = _asha()
    tuner = tune.Tuner(lambda config: None, tune_config=tune.TuneConfig(scheduler=scheduler),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="s", callbacks=[RungState(scheduler)]))
    state = cloudpickle.loads(cloudpickle.dumps(tuner._local_tuner.__getstate__()))
    restored = state["_tune_config"].scheduler
    assert restored is not scheduler and state["_run_config"].callbacks[0].scheduler is restored
