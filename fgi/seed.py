"""The one seeding utility: Python, NumPy and torch, with per-rank and per-trial offsets."""

from __future__ import annotations

import random

import numpy as np
import torch

_RANK_STRIDE = 1_000  # seeds of ranks within a trial stay apart from seeds of other trials
_TRIAL_STRIDE = 1_000_003


def derive_seed(base: int, rank: int = 0, trial: int = 0) -> int:
    """Seed of one process: ``base`` shifted by the trial index and the worker rank.

    Args:
        base: the run's base seed (``train.seed``).
        rank: the distributed worker rank.
        trial: the trial index within a sweep.
    """
    return (int(base) + int(trial) * _TRIAL_STRIDE + int(rank) * _RANK_STRIDE) % (2**31 - 1)


def seed_everything(base: int, rank: int = 0, trial: int = 0) -> int:
    """Seed Python's ``random``, NumPy's legacy global state and torch; return the derived seed."""
    seed = derive_seed(base, rank, trial)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (for masking, mixing and sampling)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def numpy_rng(seed: int) -> np.random.Generator:
    """A NumPy ``Generator`` (never the global ``np.random``) for data-side randomness."""
    return np.random.default_rng(int(seed))
