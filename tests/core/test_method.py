from __future__ import annotations

import math

import pytest
import torch

from fgi.method.losses import ConfidenceWeightedConsistency, FeatureAlignment, SegmentationLoss, sigmoid_rampup
from fgi.method.masking import apply_darm, darm_mask, uncertain_region
from fgi.method.mixing import apply_mix, cutmix_boxes, sample_beta, uniform_noise
from fgi.seed import make_generator


def _ring_region(b: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    tight = (r < size * 0.2).expand(b, 1, size, size)
    loose = (r < size * 0.4).expand(b, 1, size, size)
    return tight, loose, uncertain_region(tight, loose)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6, 0.9])
def test_darm_hides_requested_fraction_within_one_block(ratio):
    _, _, region = _ring_region()
    block_min, block_max = 0.05, 0.12
    hidden = darm_mask(region, ratio, block_min, block_max, make_generator(0))
    largest_block = round(block_max * 64) ** 2
    for b in range(region.shape[0]):
        count = int(region[b].sum())
        got = int(hidden[b].sum())
        assert math.ceil(ratio * count) <= got <= math.ceil(ratio * count) + largest_block


def test_darm_never_touches_certain_pixels_and_is_reproducible():
    _, _, region = _ring_region()
    a = darm_mask(region, 0.5, 0.03, 0.1, make_generator(1))
    b = darm_mask(region, 0.5, 0.03, 0.1, make_generator(1))
    c = darm_mask(region, 0.5, 0.03, 0.1, make_generator(2))
    assert not (a & ~region).any()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_darm_empty_region_and_zero_ratio():
    region = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    assert not darm_mask(region, 0.5, 0.1, 0.2, make_generator(0)).any()
    _, _, ring = _ring_region(2, 32)
    assert not darm_mask(ring, 0.0, 0.1, 0.2, make_generator(0)).any()


def test_darm_mixed_batch_with_one_empty_image():
    _, _, ring = _ring_region(2, 32)
    region = ring.clone()
    region[1] = False
    hidden = darm_mask(region, 0.4, 0.05, 0.1, make_generator(0))
    assert not hidden[1].any()
    assert int(hidden[0].sum()) >= math.ceil(0.4 * int(region[0].sum()))


def test_apply_darm_zeros_image_and_target():
    tight, loose, region = _ring_region(2, 32)
    hidden = darm_mask(region, 0.5, 0.05, 0.1, make_generator(0))
    image = torch.ones(2, 3, 32, 32)
    masked_image, masked_target = apply_darm(image, loose, hidden)
    assert (masked_image[hidden.expand_as(image)] == 0).all()
    assert (masked_image[~hidden.expand_as(image)] == 1).all()
    assert not masked_target[hidden].any()
    assert torch.equal(masked_target | hidden, loose)


def test_cwc_matches_hand_computation():
    # pixel 1: target p=0.9 -> positive (conf 0.9 >= 0.8) and negative for class 0 (0.1 < 0.2)
    # pixel 2: target p=0.5 -> neither term
    # pixel 3: target p=0.15 -> positive on class 0 (conf 0.85) and negative on class 1
    target = torch.tensor([0.9, 0.5, 0.15]).view(1, 1, 1, 3)
    q = torch.tensor([0.7, 0.4, 0.2])
    logits = torch.logit(q).view(1, 1, 1, 3)
    loss = ConfidenceWeightedConsistency(0.8, 0.2)(logits, target)
    pix1 = -0.9 * math.log(0.7) - 0.9 * math.log(1 - 0.3)
    pix3 = -0.85 * math.log(0.8) - 0.85 * math.log(1 - 0.2)
    assert loss.item() == pytest.approx((pix1 + pix3) / 3, rel=1e-5)


def test_cwc_empty_selection_is_zero_not_nan():
    target = torch.full((2, 1, 4, 4), 0.5)
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = ConfidenceWeightedConsistency(0.8, 0.2)(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_cwc_gradient_flows_only_to_prediction():
    target = torch.rand(2, 1, 8, 8, requires_grad=True)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    ConfidenceWeightedConsistency(0.6, 0.4)(logits, target).backward()
    assert logits.grad is not None and target.grad is None


def test_alignment_zero_for_identical_and_off_when_no_levels():
    feats = {1: torch.randn(2, 8, 4, 4), 3: torch.randn(2, 16, 2, 2)}
    assert FeatureAlignment()(feats, feats).item() == pytest.approx(0.0, abs=1e-6)
    opposite = {k: -v for k, v in feats.items()}
    assert FeatureAlignment()(feats, opposite).item() == pytest.approx(2.0, abs=1e-5)
    assert FeatureAlignment()({}, {}).item() == 0.0


def test_alignment_detaches_teacher():
    t = {1: torch.randn(1, 4, 3, 3, requires_grad=True)}
    s = {1: torch.randn(1, 4, 3, 3, requires_grad=True)}
    FeatureAlignment()(t, s).backward()
    assert t[1].grad is None and s[1].grad is not None


@pytest.mark.parametrize("kind", ["bce", "dice", "bce+dice"])
def test_segmentation_loss_decreases_toward_target(kind):
    target = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    target[:, :, 2:6, 2:6] = True
    loss = SegmentationLoss(kind)
    good = torch.where(target, 6.0, -6.0)
    assert loss(good, target) < loss(torch.zeros_like(good), target) < loss(-good, target)
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0


def test_segmentation_loss_rejects_unknown_kind():
    with pytest.raises(ValueError, match="valid kinds"):
        SegmentationLoss("focal")


def test_rampup_shape():
    assert sigmoid_rampup(0, 100, 5.0) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100, 5.0) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(100, 100, 5.0) == 1.0
    assert sigmoid_rampup(3, 0, 5.0) == 1.0


def test_cutmix_boxes_reproducible_with_expected_area():
    box, perm = cutmix_boxes(512, 32, 32, 1.0, 4.0, make_generator(0), torch.device("cpu"))
    box2, perm2 = cutmix_boxes(512, 32, 32, 1.0, 4.0, make_generator(0), torch.device("cpu"))
    assert torch.equal(box, box2) and torch.equal(perm, perm2)
    assert sorted(perm.tolist()) == list(range(512))
    # boxes clipped at the border keep less than the drawn Beta(4,4) area (mean 0.5)
    assert 0.2 < box.float().mean().item() < 0.5
    none, _ = cutmix_boxes(8, 16, 16, 0.0, 4.0, make_generator(0), torch.device("cpu"))
    assert not none.any()


def test_beta_sampler_moments():
    for alpha in (0.5, 4.0):
        x = sample_beta(alpha, 20000, make_generator(0), torch.device("cpu"))
        var = 1 / (4 * (2 * alpha + 1))
        assert x.mean().item() == pytest.approx(0.5, abs=0.01)
        assert x.var().item() == pytest.approx(var, rel=0.05)


def test_apply_mix_and_noise():
    x = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 4, 4)
    box = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    box[0, :, :2] = True
    mixed = apply_mix(x, box, torch.tensor([1, 0]))
    assert (mixed[0, :, :2] == 1).all() and (mixed[0, :, 2:] == 0).all() and (mixed[1] == 1).all()
    noisy = uniform_noise(torch.zeros(1000), 0.2, make_generator(0))
    assert noisy.abs().max() <= 0.2 and noisy.std() > 0.05
