from __future__ import annotations

import math

import pytest
import torch

from fgi.method.losses import ConfidenceWeightedConsistency, FeatureAlignment, SegmentationLoss, sigmoid_rampup
from fgi.method.masking import apply_darm, darm_blocks, darm_mask, paint_blocks, uncertain_region
from fgi.method.mixing import apply_mix, cutmix_boxes, reference_cutmix_boxes, sample_beta, uniform_noise
from fgi.seed import make_generator

CPU = torch.device("cpu")


def _ring_region(b: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    tight = (r < size * 0.2).expand(b, 1, size, size)
    loose = (r < size * 0.4).expand(b, 1, size, size)
    return tight, loose, uncertain_region(tight, loose)


def _logits(q: list[float], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.logit(torch.tensor(q, dtype=torch.float64)).float().view(shape)


# ---- confidence-weighted consistency: reference form ------------------------------------------------

def test_reference_cwc_matches_hand_computation_with_separate_denominators():
    # 1x1x2x2 target p and prediction q; tau_pos 0.8, tau_neg 0.12. With P = (1-p, p):
    # (0,0) p=0.9  P=(0.1,0.9):  positive (0.9 >= 0.8), label 1; negative (min 0.1 < 0.12)
    # (0,1) p=0.5  P=(0.5,0.5):  neither
    # (1,0) p=0.15 P=(0.85,0.15): positive, label 0; min 0.15 is not < 0.12
    # (1,1) p=0.05 P=(0.95,0.05): positive, label 0; negative
    target = torch.tensor([0.9, 0.5, 0.15, 0.05]).view(1, 1, 2, 2)
    logits = _logits([0.7, 0.4, 0.2, 0.1], (1, 1, 2, 2))
    loss = ConfidenceWeightedConsistency(0.8, 0.12)(logits, target)
    # positive: -max P * log Q_label, mean over its 3 pixels
    positive = (-0.9 * math.log(0.7) - 0.85 * math.log(1 - 0.2) - 0.95 * math.log(1 - 0.1)) / 3
    # negative: -min P * log(1 - Q_other), mean over its 2 pixels; 1 - Q_0 = 0.7 at (0,0), 1 - Q_1 = 0.9 at (1,1)
    negative = (-0.1 * math.log(0.7) - 0.05 * math.log(0.9)) / 2
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)


def test_reference_cwc_pools_selected_pixels_over_the_batch():
    # sample 0 selects one pixel, sample 1 three; the reference averages the four together
    target = torch.tensor([[0.9, 0.5, 0.5, 0.5], [0.9, 0.9, 0.9, 0.5]]).view(2, 1, 1, 4)
    logits = _logits([0.6, 0.5, 0.5, 0.5, 0.8, 0.8, 0.8, 0.5], (2, 1, 1, 4))
    loss = ConfidenceWeightedConsistency(0.8, 0.05)(logits, target)  # min P 0.1 is never < 0.05
    pooled = (-0.9 * math.log(0.6) - 3 * 0.9 * math.log(0.8)) / 4
    per_sample = (-0.9 * math.log(0.6) + (-0.9 * math.log(0.8))) / 2
    assert loss.item() == pytest.approx(pooled, rel=1e-5)
    assert abs(pooled - per_sample) > 1e-3


def test_reference_cwc_clamps_the_negative_term_like_the_reference():
    # p = 0.95 (label 1) against a prediction of sigma(-40): log Q_1 is about -40 in the positive term,
    # and 1 - Q_0 = Q_1 is clamped at 1e-6 in the negative term
    target = torch.full((1, 1, 1, 1), 0.95)
    logits = torch.full((1, 1, 1, 1), -40.0)
    loss = ConfidenceWeightedConsistency(0.8, 0.2)(logits, target)
    expected = 0.95 * 40.0 + 0.05 * -math.log(1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("form", ["reference", "symmetric"])
def test_cwc_empty_selection_is_zero_not_nan(form):
    target = torch.full((2, 1, 4, 4), 0.5)
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = ConfidenceWeightedConsistency(0.8, 0.2, form)(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad.any()


@pytest.mark.parametrize("form", ["reference", "symmetric"])
def test_cwc_gradient_flows_only_to_prediction(form):
    target = torch.rand(2, 1, 8, 8, requires_grad=True)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    ConfidenceWeightedConsistency(0.6, 0.4, form)(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0 and target.grad is None


def test_symmetric_cwc_ablation_matches_hand_computation():
    # the earlier form: negative weighted by max P, both terms divided by all pixels
    target = torch.tensor([0.9, 0.5, 0.15]).view(1, 1, 1, 3)
    logits = _logits([0.7, 0.4, 0.2], (1, 1, 1, 3))
    loss = ConfidenceWeightedConsistency(0.8, 0.2, "symmetric")(logits, target)
    pix1 = -0.9 * math.log(0.7) - 0.9 * math.log(1 - 0.3)
    pix3 = -0.85 * math.log(0.8) - 0.85 * math.log(1 - 0.2)
    assert loss.item() == pytest.approx((pix1 + pix3) / 3, rel=1e-5)


def test_cwc_rejects_unknown_form():
    with pytest.raises(ValueError, match="valid forms"):
        ConfidenceWeightedConsistency(0.8, 0.2, "doubled")


# ---- alignment, segmentation, ramp-up ---------------------------------------------------------------

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


# ---- DARM: reference block form ---------------------------------------------------------------------

def test_block_darm_hides_whole_odd_blocks_of_the_reference_sizes_around_the_centre():
    # one uncertain pixel per image: ratio 1 spends floor(1 * 1) = 1 pixel, so exactly one block, and
    # the reference's extent [c - s//2, c + s//2] makes its side 2 * (s // 2) + 1 for s drawn in 3..10
    b, size, c = 64, 64, 30
    region = torch.zeros(b, 1, size, size, dtype=torch.bool)
    region[:, :, c, c] = True
    hidden = darm_mask(region, 1.0, 3 / 64, 10 / 64, make_generator(0))
    sides = set()
    for i in range(b):
        ys, xs = torch.nonzero(hidden[i, 0], as_tuple=True)
        side = int(ys.max() - ys.min() + 1)
        assert int(xs.max() - xs.min() + 1) == side and int(hidden[i].sum()) == side * side  # a full square
        assert int(ys.min() + ys.max()) == 2 * c and int(xs.min() + xs.max()) == 2 * c  # centred on the pixel
        sides.add(side)
    assert sides <= {3, 5, 7, 9, 11} and len(sides) >= 4


def test_block_darm_zeroes_whole_blocks_including_pixels_outside_the_region():
    tight, loose, region = _ring_region(4, 64)
    blocks = darm_blocks(region, 0.3, 3 / 64, 10 / 64, make_generator(3))
    hidden = paint_blocks(blocks, 64, 64)
    assert torch.equal(hidden, darm_mask(region, 0.3, 3 / 64, 10 / 64, make_generator(3)))
    assert (hidden & ~region).any()  # not just the ring pixels inside blocks
    for i, j in torch.nonzero(blocks.keep).tolist():
        top, left = int(blocks.top[i, j]), int(blocks.left[i, j])
        assert hidden[i, 0, top:top + int(blocks.height[i, j]), left:left + int(blocks.width[i, j])].all()
    image = torch.ones(4, 3, 64, 64)
    masked_image, masked_target = apply_darm(image, loose, hidden)
    assert (masked_image[hidden.expand_as(image)] == 0).all() and (masked_image[~hidden.expand_as(image)] == 1).all()
    assert not masked_target[hidden].any() and torch.equal(masked_target | (hidden & loose), loose)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6])
def test_block_darm_spends_the_reference_budget_of_summed_block_area(ratio):
    # blocks are added until their summed (clipped, overlapping) area reaches floor(ratio * |region|)
    _, _, region = _ring_region(4, 64)
    blocks = darm_blocks(region, ratio, 3 / 64, 10 / 64, make_generator(1))
    area = blocks.height * blocks.width * blocks.keep
    for i in range(4):
        need = math.floor(ratio * int(region[i].sum()))
        kept = torch.nonzero(blocks.keep[i]).flatten()
        assert kept.tolist() == list(range(len(kept)))  # a prefix of the random order
        total = int(area[i].sum())
        assert total >= need > total - int(area[i, kept[-1]])


def test_block_darm_hidden_share_of_the_region_is_near_the_ratio():
    full = torch.ones(4, 1, 128, 128, dtype=torch.bool)
    share = darm_mask(full, 0.3, 3 / 224, 10 / 224, make_generator(0)).float().mean().item()
    # summed block area is 0.3 of the region up to one block; overlapping blocks hide a little less
    assert 0.22 < share <= 0.3 + 121 / 128**2
    _, _, ring = _ring_region(4, 224)
    hidden = darm_mask(ring, 0.3, 3 / 224, 10 / 224, make_generator(0))
    ring_share = ((hidden & ring).flatten(1).sum(1).float() / ring.flatten(1).sum(1)).tolist()
    assert all(0.15 < s <= 0.3 for s in ring_share)


@pytest.mark.parametrize("hide", ["block", "ring"])
def test_darm_is_reproducible_and_seed_dependent(hide):
    _, _, region = _ring_region()
    a = darm_mask(region, 0.5, 0.03, 0.1, make_generator(1), hide)
    b = darm_mask(region, 0.5, 0.03, 0.1, make_generator(1), hide)
    c = darm_mask(region, 0.5, 0.03, 0.1, make_generator(2), hide)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("hide", ["block", "ring"])
def test_darm_empty_region_zero_ratio_and_one_empty_image(hide):
    region = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    assert not darm_mask(region, 0.5, 0.1, 0.2, make_generator(0), hide).any()
    _, _, ring = _ring_region(2, 32)
    assert not darm_mask(ring, 0.0, 0.1, 0.2, make_generator(0), hide).any()
    mixed = ring.clone()
    mixed[1] = False
    hidden = darm_mask(mixed, 0.4, 0.05, 0.1, make_generator(0), hide)
    assert not hidden[1].any() and hidden[0].any()


def test_darm_rejects_unknown_form():
    _, _, region = _ring_region(1, 16)
    with pytest.raises(ValueError, match="valid forms"):
        darm_mask(region, 0.3, 0.1, 0.2, make_generator(0), "pixels")


# ---- DARM: decoy blocks (option) --------------------------------------------------------------------

def test_decoys_off_draw_nothing_more_than_the_reference():
    _, _, region = _ring_region(4, 64)
    reference = paint_blocks(darm_blocks(region, 0.3, 3 / 64, 10 / 64, make_generator(5)), 64, 64)
    assert torch.equal(darm_mask(region, 0.3, 3 / 64, 10 / 64, make_generator(5), "block", 0.0), reference)


def test_decoys_spend_their_own_budget_away_from_the_region():
    # a single uncertain pixel: every hidden pixel more than half a block away from it is a decoy
    size, c = 64, 10
    region = torch.zeros(2, 1, size, size, dtype=torch.bool)
    region[:, :, c, c] = True
    hidden = darm_mask(region, 1.0, 3 / 64, 5 / 64, make_generator(0), "block", 0.2)
    far = torch.ones_like(region)
    far[:, :, : c + 3, : c + 3] = False  # the reference block around (c, c) has a side of at most 5
    for i in range(2):
        decoy_area = int((hidden[i] & far[i]).sum())
        # summed decoy area reaches floor(0.2 * 4095) = 819 up to one block of side <= 5; overlaps hide less
        assert 0.7 * 819 < decoy_area <= 819 + 25


def test_equal_decoys_make_hidden_density_the_same_inside_and_outside_the_ring():
    # the shortcut the decoys remove: without them, hidden pixels sit only near the tight/loose boundary
    _, _, ring = _ring_region(8, 128)
    near = torch.nn.functional.max_pool2d(ring.float(), 13, stride=1, padding=6).bool()
    for decoys, want_far in ((0.0, False), (0.3, True)):
        hidden = darm_mask(ring, 0.3, 3 / 128, 10 / 128, make_generator(2), "block", decoys)
        far_share = (hidden & ~near).sum().item() / (~near).sum().item()
        ring_share = (hidden & ring).sum().item() / ring.sum().item()
        if want_far:
            assert abs(far_share - ring_share) < 0.06, (far_share, ring_share)
        else:
            assert far_share == 0.0 and ring_share > 0.15


# ---- DARM: uniform placement (option) ---------------------------------------------------------------

def test_uniform_placement_draws_the_same_blocks_wherever_the_region_lies():
    # the leak it removes: only the region's pixel count enters, so the blocks carry no trace of its shape
    size = 64
    left = torch.zeros(2, 1, size, size, dtype=torch.bool)
    left[:, :, 10:30, 5:25] = True
    right = torch.zeros_like(left)
    right[:, :, 40:60, 30:50] = True
    a = darm_mask(left, 0.5, 3 / 64, 8 / 64, make_generator(4), placement="uniform")
    b = darm_mask(right, 0.5, 3 / 64, 8 / 64, make_generator(4), placement="uniform")
    ring = darm_mask(left, 0.5, 3 / 64, 8 / 64, make_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, ring)


@pytest.mark.parametrize("ratio", [0.2, 0.6])
def test_uniform_placement_keeps_the_ring_budget_and_sizes_with_centres_anywhere(ratio):
    _, _, region = _ring_region(4, 64)
    everywhere = torch.ones_like(region)
    blocks = darm_blocks(region, ratio, 3 / 64, 10 / 64, make_generator(3), centres=everywhere)
    area = blocks.height * blocks.width * blocks.keep
    centre_y = blocks.top + blocks.height // 2
    centre_x = blocks.left + blocks.width // 2
    off_region = 0
    for i in range(4):
        need = math.floor(ratio * int(region[i].sum()))
        kept = torch.nonzero(blocks.keep[i]).flatten()
        total = int(area[i].sum())
        assert total >= need > total - int(area[i, kept[-1]])
        assert int(blocks.height[i, kept].max()) <= 2 * (10 // 2) + 1
        off_region += int((~region[i, 0, centre_y[i, kept], centre_x[i, kept]]).sum())
    # the ring covers about 38 % of the image, so most centres fall outside it
    assert off_region > 0.4 * int(blocks.keep.sum())


def test_uniform_placement_needs_whole_blocks():
    _, _, region = _ring_region(1, 16)
    with pytest.raises(ValueError, match="uniform needs masking.hide block"):
        darm_mask(region, 0.3, 0.1, 0.2, make_generator(0), "ring", placement="uniform")
    with pytest.raises(ValueError, match="valid placements"):
        darm_mask(region, 0.3, 0.1, 0.2, make_generator(0), placement="edges")


# ---- DARM: ring ablation ----------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6, 0.9])
def test_ring_darm_hides_requested_fraction_within_one_block(ratio):
    _, _, region = _ring_region()
    block_min, block_max = 0.05, 0.12
    hidden = darm_mask(region, ratio, block_min, block_max, make_generator(0), "ring")
    largest_block = round(block_max * 64) ** 2
    for b in range(region.shape[0]):
        count = int(region[b].sum())
        got = int(hidden[b].sum())
        assert math.ceil(ratio * count) <= got <= math.ceil(ratio * count) + largest_block


def test_ring_darm_never_touches_certain_pixels():
    _, _, region = _ring_region()
    assert not (darm_mask(region, 0.5, 0.03, 0.1, make_generator(1), "ring") & ~region).any()


# ---- CutMix -----------------------------------------------------------------------------------------

def test_reference_cutmix_draws_one_area_per_call_and_independent_calls():
    gen = make_generator(0)
    b, size = 64, 512
    box, perm = reference_cutmix_boxes(b, size, size, 1.0, 4.0, gen, CPU)
    box2, perm2 = reference_cutmix_boxes(b, size, size, 1.0, 4.0, gen, CPU)
    assert sorted(perm.tolist()) == list(range(b))
    assert not torch.equal(box, box2) and not torch.equal(perm, perm2)  # two independent CutMixes
    for boxes in (box, box2):
        rows = boxes[:, 0].any(2)
        heights = rows.sum(1)
        inner = heights[~rows[:, 0] & ~rows[:, -1]]  # boxes not clipped at the top or bottom
        assert len(inner) > 0 and (inner == inner[0]).all() and (heights <= inner[0]).all()
        assert inner[0] % 2 == 0  # the reference's extent is 2 * (cut // 2)
    again, _ = reference_cutmix_boxes(b, size, size, 1.0, 4.0, make_generator(0), CPU)
    assert torch.equal(again, box)


def test_reference_cutmix_area_and_probability():
    gen = make_generator(1)
    areas = []
    for _ in range(300):
        box, _ = reference_cutmix_boxes(1, 64, 64, 1.0, 4.0, gen, CPU)
        rows, cols = box[0, 0].any(1), box[0, 0].any(0)
        areas.append(int(rows.sum()) * int(cols.sum()) / 64**2)
    # Beta(4,4) area of mean 0.5, less the truncation to even sides and the clipping at the border
    assert 0.25 < sum(areas) / len(areas) < 0.5
    none, _ = reference_cutmix_boxes(8, 16, 16, 0.0, 4.0, gen, CPU)
    assert not none.any()
    every, _ = reference_cutmix_boxes(200, 64, 64, 1.0, 4.0, gen, CPU)
    assert every.flatten(1).any(1).float().mean() > 0.95


def test_single_cutmix_boxes_reproducible_with_expected_area():
    box, perm = cutmix_boxes(512, 32, 32, 1.0, 4.0, make_generator(0), CPU)
    box2, perm2 = cutmix_boxes(512, 32, 32, 1.0, 4.0, make_generator(0), CPU)
    assert torch.equal(box, box2) and torch.equal(perm, perm2)
    assert sorted(perm.tolist()) == list(range(512))
    # boxes clipped at the border keep less than the drawn Beta(4,4) area (mean 0.5)
    assert 0.2 < box.float().mean().item() < 0.5
    none, _ = cutmix_boxes(8, 16, 16, 0.0, 4.0, make_generator(0), CPU)
    assert not none.any()


def test_beta_sampler_moments():
    for alpha in (0.5, 4.0):
        x = sample_beta(alpha, 20000, make_generator(0), CPU)
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
