"""Per-image segmentation metrics: Dice, IoU, HD95 and ASD (distances in pixels).

Empty cases are defined, not NaN:
- both prediction and ground truth empty: Dice 1, IoU 1, HD95 0, ASD 0;
- exactly one empty: Dice 0, IoU 0, HD95 and ASD equal the image diagonal (the worst distance possible).
ASD is the average symmetric surface distance; HD95 is the larger of the two directed 95th percentiles
of surface distances (the MedPy definition).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

METRICS = ("dice", "iou", "hd95", "asd")


def _surface(mask: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)
    return mask & ~eroded


def _directed(a_surface: np.ndarray, b_surface: np.ndarray) -> np.ndarray:
    """Distances from each surface pixel of a to the nearest surface pixel of b."""
    dist_to_b = ndimage.distance_transform_edt(~b_surface)
    return dist_to_b[a_surface]


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Dice, IoU, HD95 and ASD of one binary prediction.

    Shape:
        pred, gt (H, W) bool.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    p_any, g_any = pred.any(), gt.any()
    if not p_any and not g_any:
        return {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "asd": 0.0}
    if not p_any or not g_any:
        diag = float(np.hypot(*pred.shape))
        return {"dice": 0.0, "iou": 0.0, "hd95": diag, "asd": diag}
    inter = np.logical_and(pred, gt).sum()
    total = pred.sum() + gt.sum()
    union = total - inter
    ps, gs = _surface(pred), _surface(gt)
    d_pg, d_gp = _directed(ps, gs), _directed(gs, ps)
    return {
        "dice": float(2 * inter / total),
        "iou": float(inter / union),
        "hd95": float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))),
        "asd": float((d_pg.sum() + d_gp.sum()) / (len(d_pg) + len(d_gp))),
    }


def batch_metrics(pred: np.ndarray, gt: np.ndarray) -> list[dict[str, float]]:
    """``image_metrics`` for each image of a batch.

    Shape:
        pred, gt (B, H, W) or (B, 1, H, W) bool.
    """
    pred = np.asarray(pred, dtype=bool).reshape(-1, *np.shape(pred)[-2:])
    gt = np.asarray(gt, dtype=bool).reshape(-1, *np.shape(gt)[-2:])
    return [image_metrics(p, g) for p, g in zip(pred, gt, strict=True)]


def dice_per_image(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Dice of each image's binary prediction; 1 when both masks are empty (as ``image_metrics``).

    Shape:
        pred, gt (B, 1, H, W) bool. Returns (B,) float64.
    """
    p, g = pred.flatten(1).bool(), gt.flatten(1).bool()
    inter = (p & g).sum(1).double()
    total = (p.sum(1) + g.sum(1)).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def summarize(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each metric over images."""
    out = {}
    for name in METRICS:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        out[name] = (float(values.mean()), float(values.std())) if len(values) else (float("nan"), float("nan"))
    return out
