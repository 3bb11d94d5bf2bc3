"""fgi.search.compare: the paired bootstraps behind a staged search's final choice and the protocol tables."""

from __future__ import annotations

import pytest

from fgi.search.compare import CompareError, mean_over_seeds, paired_bootstrap, seed_image_bootstrap


def test_paired_bootstrap_of_a_constant_shift_is_that_shift():
    b = {f"i{k}": 0.1 * k for k in range(10)}
    a = {i: v + 0.05 for i, v in b.items()}
    mean, lo, hi = paired_bootstrap(a, b)
    assert mean == pytest.approx(0.05) and lo == pytest.approx(0.05) and hi == pytest.approx(0.05)


def test_paired_bootstrap_interval_brackets_the_mean_and_uses_only_common_images():
    a = {"x": 0.9, "y": 0.5, "z": 0.7, "only_a": 0.0}
    b = {"x": 0.8, "y": 0.6, "z": 0.4}
    mean, lo, hi = paired_bootstrap(a, b, samples=2000)
    assert mean == pytest.approx((0.1 - 0.1 + 0.3) / 3)
    assert -0.1 - 1e-9 <= lo <= mean <= hi <= 0.3 + 1e-9
    with pytest.raises(CompareError, match="share no image"):
        paired_bootstrap({"p": 1.0}, {"q": 1.0})


def test_the_seed_interval_holds_the_spread_between_seeds():
    # arm a: seed 0 scores 0.6 on every image, seed 1 scores 0.8; arm b: 0.5 everywhere. Averaging the seeds
    # first leaves no spread (a shift of 0.2 on every image); resampling the two seeds of a gives the means
    # 0.6, 0.7, 0.8 with probabilities 1/4, 1/2, 1/4, so the 95 % interval of a - b is [0.1, 0.3].
    ids = [f"i{k}" for k in range(8)]
    a = [{i: 0.6 for i in ids}, {i: 0.8 for i in ids}]
    b = [{i: 0.5 for i in ids}]
    assert paired_bootstrap(mean_over_seeds(a), b[0])[1:] == pytest.approx((0.2, 0.2))
    assert seed_image_bootstrap(a, b) == pytest.approx((0.1, 0.3))


def test_the_seed_interval_keeps_images_paired_and_uses_only_common_images():
    b = {f"i{k}": 0.1 * k for k in range(10)}
    a = {i: v + 0.05 for i, v in b.items()}
    assert seed_image_bootstrap([a, {**a, "only_a": 0.0}], [b]) == pytest.approx((0.05, 0.05))
    with pytest.raises(CompareError, match="share no image"):
        seed_image_bootstrap([{"p": 1.0}], [{"q": 1.0}])


def test_mean_over_seeds_averages_each_image_over_the_seeds_that_have_it():
    assert mean_over_seeds([{"x": 0.2, "y": 0.4}, {"x": 0.6}]) == pytest.approx({"x": 0.4, "y": 0.4})


def test_a_config_without_runs_is_an_error():
    with pytest.raises(CompareError, match="at least one run"):
        seed_image_bootstrap([], [{"q": 1.0}])
