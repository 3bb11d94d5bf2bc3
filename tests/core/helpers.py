"""Tiny synthetic batches for engine and method tests.

The gaze levels here are a test stand-in (a blurred ground-truth mask thresholded at two levels), so
these tests do not depend on the gaze pipeline; the pipeline's own tests cover real heatmaps.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from fgi.config import Config, from_dict
from tests.synthetic import make_split


def blurred_mask_standin(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Stand-in soft map: the ground truth blurred and min-max normalized (tests only)."""
    soft = ndimage.gaussian_filter(mask.astype(np.float32), sigma)
    return soft / max(float(soft.max()), 1e-6)


def tiny_config(**sections) -> Config:
    """A config small enough for CPU unit tests; ``sections`` update the nested mapping."""
    data = {
        "data": {"image_size": 32},
        "model": {"teacher_widths": [8, 16, 16, 32], "student_widths": [8, 8, 16, 16], "norm_groups": 4,
                  "fusion_scales": [1, 2, 3], "attn_heads": 2},
        "loss": {"align_scales": [1, 2, 3], "rampup_fraction": 0.5},
        "text": {"dim": 12},
        "optim": {"warmup_fraction": 0.1},
        "train": {"max_steps": 20, "batch_size": 4},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return from_dict(data)


def make_batches(cfg: Config, split: str, n: int, batch_size: int, seed: int = 0) -> list[dict]:
    """Batches in the engine's format from the synthetic generator."""
    size = cfg.data.image_size
    samples = make_split(split, n, size, seed)
    text_gen = torch.Generator().manual_seed(seed + 1)
    batches = []
    for start in range(0, n, batch_size):
        chunk = samples[start:start + batch_size]
        image = torch.from_numpy(np.stack([s.image for s in chunk])).permute(0, 3, 1, 2).float() / 255.0
        soft = np.stack([blurred_mask_standin(s.mask, sigma=size / 16) for s in chunk])[:, None]
        mask = torch.from_numpy(np.stack([s.mask for s in chunk]))[:, None]
        batch = {
            "image": (image - 0.5) / 0.25,
            "tight": torch.from_numpy(soft >= cfg.data.tight_level),
            "loose": torch.from_numpy(soft >= cfg.data.loose_level),
            "mask": mask,
            "id": [s.id for s in chunk],
        }
        if cfg.text.mode == "pooled":
            batch["text"] = torch.randn(len(chunk), cfg.text.dim, generator=text_gen)
        elif cfg.text.mode == "tokens":
            batch["text"] = torch.randn(len(chunk), 10, cfg.text.dim, generator=text_gen)
            batch["text_mask"] = torch.tensor([[True] * 8 + [False] * 2] * len(chunk))
        batches.append(batch)
    return batches
