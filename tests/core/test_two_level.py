"""The GazeMedSeg-style two-level baseline: its consistency term and its training step."""

from __future__ import annotations

import math

import pytest
import torch

from fgi.config import Config
from fgi.method.engine import TeacherStudentTrainer
from fgi.method.losses import level_consistency
from fgi.models.two_level import propagate_features
from tests.core.helpers import make_batches, tiny_config


def test_level_consistency_matches_a_hand_computed_value_and_gradient():
    # one pixel: level 1 p = 0.8, level 2 p = 0.75; P1 . P2 = 0.2*0.25 + 0.8*0.75 = 0.65 for each level
    logits = torch.tensor([math.log(4.0), math.log(3.0)]).view(2, 1, 1, 1, 1).requires_grad_(True)
    loss = level_consistency(logits)
    assert loss.item() == pytest.approx(-1.3, abs=1e-6)
    loss.backward()
    # d/dl1 of -(P1 . P2) with P2 detached: -p1 (1 - p1) (2 p2 - 1) = -0.16 * 0.5
    assert logits.grad.flatten().tolist() == pytest.approx([-0.08, -0.1875 * 0.6], abs=1e-6)


def test_prop_consistency_scores_the_propagated_prediction_against_the_other_raw_one():
    # raw p = 0.8, 0.75; propagated q = 0.5, 0.5: -(Q1 . P2) - (Q2 . P1) = -0.5 - 0.5
    logits = torch.tensor([math.log(4.0), math.log(3.0)]).view(2, 1, 1, 1, 1).requires_grad_(True)
    propagated = torch.zeros(2, 1, 1, 1, 1, requires_grad=True)
    loss = level_consistency(logits, propagated)
    assert loss.item() == pytest.approx(-1.0, abs=1e-6)
    loss.backward()
    # only the propagated side learns: -q (1 - q) (2 p_other - 1)
    assert propagated.grad.flatten().tolist() == pytest.approx([-0.25 * 0.5, -0.25 * 0.6], abs=1e-6)
    assert logits.grad is None


def test_feature_propagation_weights_neighbours_by_a_softmax_of_their_products():
    feat = torch.ones(1, 1, 5, 5)
    e = math.e
    one = propagate_features(feat, radius=1, dilation=1)
    # inside, the 9 neighbours agree equally: the mean is 1; at a corner 4 lie inside (product 1) and
    # 5 in the zero padding (product 0): 4e / (4e + 5)
    assert one[0, 0, 2, 2].item() == pytest.approx(1.0, abs=1e-6)
    assert one[0, 0, 0, 0].item() == pytest.approx(4 * e / (4 * e + 5), abs=1e-6)
    # with dilation 2 the pixel next to the corner reaches 2 pixels away: 4 of its 9 neighbours fall outside
    two = propagate_features(feat, radius=1, dilation=2)
    assert one[0, 0, 1, 1].item() == pytest.approx(1.0, abs=1e-6)
    assert two[0, 0, 1, 1].item() == pytest.approx(4 * e / (4 * e + 5), abs=1e-6)
    assert propagate_features(torch.randn(2, 3, 7, 6), radius=2, dilation=2).shape == (2, 3, 7, 6)


@pytest.mark.parametrize("mode", ["prop", "pure"])
def test_the_level_term_is_gazemedsegs_mode(mode):
    cfg = tiny_config(train={"method": "two_level"}, text={"mode": "none"}, loss={"level_mode": mode})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    batch = make_batches(cfg, "train", 4, 4)[0]
    with torch.no_grad():
        out = trainer.student(batch["image"], propagate=True)
    expected = level_consistency(out["levels"], out["propagated"] if mode == "prop" else None)
    other = level_consistency(out["levels"], None if mode == "prop" else out["propagated"])
    losses = trainer.train_step(batch)
    assert losses["loss_level"] == pytest.approx(expected.item(), rel=1e-5)
    assert losses["loss_level"] != pytest.approx(other.item(), rel=1e-3)


def test_two_level_defaults_to_gazemedsegs_kvasir_script():
    assert Config().loss.level_mode == "prop" and Config().loss.level_weight == 3.0


def test_two_level_trains_both_networks_and_predicts_their_mean():
    cfg = tiny_config(train={"method": "two_level"}, text={"mode": "none"})
    trainer = TeacherStudentTrainer(cfg, torch.device("cpu"))
    batch = make_batches(cfg, "train", 4, 4)[0]
    before = [[p.detach().clone() for p in net.parameters()] for net in trainer.student.nets]
    # GazeMedSeg's default: the second network starts as a copy of the first
    assert all(torch.equal(a, b) for a, b in zip(*before, strict=True))
    losses = trainer.train_step(batch)
    assert {"loss_tight_seg", "loss_loose_seg", "loss_level"} <= set(losses)
    assert losses["loss"] == pytest.approx(losses["loss_tight_seg"] + losses["loss_loose_seg"]
                                           + cfg.loss.level_weight * losses["loss_level"], rel=1e-5)
    for net, start in zip(trainer.student.nets, before, strict=True):
        moved = [not torch.equal(a, b) for a, b in zip(start, net.parameters(), strict=True)]
        assert any(moved) and any(p.grad is not None for p in net.parameters())
    # different labels take the copies apart
    assert any(not torch.equal(a, b) for a, b in zip(*(n.parameters() for n in trainer.student.nets), strict=True))
    image = batch["image"][:2]
    trainer.student.eval()
    with torch.no_grad():
        l1, l2 = (net(image) for net in trainer.student.nets)
    expected = torch.sigmoid((l1 + l2) / 2)
    assert torch.allclose(trainer.predict(image), expected, atol=1e-5)


def test_independent_level_init_draws_two_different_networks():
    cfg = tiny_config(train={"method": "two_level"}, text={"mode": "none"}, model={"level_init": "independent"})
    nets = TeacherStudentTrainer(cfg, torch.device("cpu")).student.nets
    weights = [[p for p in net.parameters() if p.dim() > 1] for net in nets]
    assert all(not torch.equal(a, b) for a, b in zip(*weights, strict=True))
