"""Paired comparisons of two configs' per-image Dice: the statistics behind a staged search's final choice
and the protocol's tables.

Each config is given as per-image Dice by image id, one mapping per seed. ``paired_bootstrap`` averages the
seeds first and resamples images; ``seed_image_bootstrap`` resamples each config's seeds and then images
(drawn once for both configs, so the pairing over images stays), so its interval holds the seed noise too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000


class CompareError(ValueError):
    """Two configs that share no image, or a config without runs; the message says which."""


def mean_over_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-image Dice averaged over a config's seeds (images some seed lacks are averaged over the others)."""
    by_id: dict[str, list[float]] = {}
    for dice in runs:
        for i, d in dice.items():
            by_id.setdefault(i, []).append(float(d))
    return {i: float(np.mean(v)) for i, v in by_id.items()}


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], seed: int = 0,
                     samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float, float]:
    """Mean difference of per-image Dice (a - b) and its percentile 95 % bootstrap interval over images.

    Args:
        a, b: per-image Dice by image id, each already averaged over the config's seeds.
        seed: bootstrap seed.
        samples: bootstrap resamples.

    Raises:
        CompareError: no common image.
    """
    ids = sorted(set(a) & set(b))
    if not ids:
        raise CompareError("the two configs share no image")
    diff = np.array([a[i] - b[i] for i in ids])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def seed_image_bootstrap(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]], seed: int = 0,
                         samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile 95 % interval of the mean Dice difference (a - b), resampling each config's seeds, then images.

    With one seed per config it estimates what ``paired_bootstrap``'s interval does.

    Args:
        a, b: per-image Dice by image id, one mapping per seed of the config.
        seed: bootstrap seed.
        samples: bootstrap resamples.

    Raises:
        CompareError: a config without runs, or no image common to every run.
    """
    if not a or not b:
        raise CompareError("each config needs at least one run")
    ids = sorted(set.intersection(*(set(r) for r in (*a, *b))))
    if not ids:
        raise CompareError("the two configs' runs share no image")
    arms = [np.array([[r[i] for i in ids] for r in runs]) for runs in (a, b)]  # seeds x images
    rng = np.random.default_rng(seed)
    means = [x[rng.integers(0, len(x), size=(samples, len(x)))].mean(1) for x in arms]  # samples x images
    images = rng.integers(0, len(ids), size=(samples, len(ids)))
    diffs = np.take_along_axis(means[0] - means[1], images, 1).mean(1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


__all__ = ["BOOTSTRAP_SAMPLES", "CompareError", "mean_over_seeds", "paired_bootstrap", "seed_image_bootstrap"]
