"""The inference cost a multi-objective sweep can trade against Dice: ms per image and parameters."""

from __future__ import annotations

import pytest
import torch

from fgi.method.engine import TeacherStudentTrainer
from fgi.run.worker import inference_cost
from tests.core.helpers import make_batches, tiny_config

CPU = torch.device("cpu")


@pytest.mark.parametrize("text_mode", ["none", "tokens"])
def test_the_cost_counts_the_networks_the_predictor_runs(text_mode):
    costs = {}
    for predictor in ("student", "teacher", "ensemble"):
        cfg = tiny_config(model={"predictor": predictor}, text={"mode": text_mode})
        trainer = TeacherStudentTrainer(cfg, CPU)
        batch = make_batches(cfg, "val", 4, 4, seed=0)[0]
        costs[predictor] = inference_cost(trainer, batch)
    # the student is the narrower network, and the ensemble runs both
    assert 0 < costs["student"]["infer_mparams"] < costs["teacher"]["infer_mparams"]
    assert costs["ensemble"]["infer_mparams"] == pytest.approx(
        costs["student"]["infer_mparams"] + costs["teacher"]["infer_mparams"])
    assert all(c["infer_ms"] > 0 for c in costs.values())
