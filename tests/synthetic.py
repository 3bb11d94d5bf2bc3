"""Whole synthetic splits for tests (the library makes samples one at a time, ``fgi.data.synthetic.make_sample``)."""

from __future__ import annotations

from fgi.config import GazeConfig
from fgi.data.synthetic import SyntheticSample, make_sample


def make_split(split: str, n: int, size: int, seed: int, gaze: GazeConfig | None = None) -> list[SyntheticSample]:
    """``n`` samples of one split (see ``make_sample``)."""
    return [make_sample(i, size, seed, split, gaze) for i in range(n)]
