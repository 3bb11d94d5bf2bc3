"""The one seeding utility: Python, NumPy and torch, with per-rank offsets.

A sweep varies its trials' seeds through ``train.seed`` (searched or fixed), so a seed depends on the
config and the worker rank only."""

from __future__ import annotations

import random

import numpy as np
import torch

_RANK_STRIDE = 1_000  # seeds of ranks stay apart from the next base seeds' ranks


def derive_seed(base: int, rank: int = 0) -> int:
    """Seed of one process: ``base`` shifted by the worker rank.

    Args:
        base: the run's base seed (``train.seed``).
        rank: the distributed worker rank.
    """
    return (int(base) + int(rank) * _RANK_STRIDE) % (2**31 - 1)


def seed_everything(base: int, rank: int = 0) -> int:
    """Seed Python's ``random``, NumPy's legacy global state and torch; return the derived seed."""
    seed = derive_seed(base, rank)
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
