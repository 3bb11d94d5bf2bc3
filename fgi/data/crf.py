"""Dense-CRF refinement of a soft gaze heatmap against its image (``pydensecrf2``).

The CRF map is stored soft (the foreground marginal), so gaze levels can be searched at load time.
``CRFConfig.sxy`` is in pixels of the working size: the reference values (sxy 80) were tuned at the
original Kvasir resolution (about 620x530), so ``CRFConfig.work_size`` sets the longest side the CRF
runs at, and 0 runs it at the resolution it is given (``fgi prepare`` gives it the original image).
The smoothness (Gaussian) kernel is added only when ``gaussian_compat`` > 0; the reference Dice table
was measured with the bilateral kernel alone (see docs/RESULTS.md, Preparation).
"""

from __future__ import annotations

import cv2
import numpy as np

from fgi.config import CRFConfig

_EPS = 1e-5  # keeps -log(p) finite where the heatmap is exactly 0 or 1


def crf_refine(image: np.ndarray, heatmap: np.ndarray, cfg: CRFConfig) -> np.ndarray:
    """Soft CRF foreground map of one image.

    Args:
        image: (H, W, C) uint8 image with C = 1 or 3 (grey images are repeated to three channels).
        heatmap: (H, W) float foreground probability in [0, 1].
        cfg: CRF settings; with ``enabled`` false the heatmap is returned unchanged.

    Returns:
        (H, W) float32 foreground marginal in [0, 1].
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    if not cfg.enabled:
        return heat.copy()
    import pydensecrf.densecrf as dcrf

    h, w = heat.shape
    img = image if image.ndim == 3 else image[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[:, :, :3]
    scale = 1.0
    if cfg.work_size and max(h, w) != cfg.work_size:
        scale = cfg.work_size / max(h, w)
        ws, hs = max(1, round(w * scale)), max(1, round(h * scale))
        img = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        heat_w = cv2.resize(heat, (ws, hs), interpolation=cv2.INTER_LINEAR)
    else:
        hs, ws = h, w
        heat_w = heat
    p = np.clip(heat_w, _EPS, 1.0 - _EPS)
    probs = np.stack([1.0 - p, p]).reshape(2, -1)
    unary = np.ascontiguousarray(-np.log(probs).astype(np.float32))
    d = dcrf.DenseCRF2D(ws, hs, 2)
    d.setUnaryEnergy(unary)
    if cfg.gaussian_compat > 0:
        d.addPairwiseGaussian(sxy=cfg.gaussian_sxy, compat=cfg.gaussian_compat)
    d.addPairwiseBilateral(sxy=cfg.sxy, srgb=cfg.srgb, rgbim=np.ascontiguousarray(img, dtype=np.uint8),
                           compat=cfg.compat)
    q = np.asarray(d.inference(cfg.iterations), dtype=np.float32).reshape(2, hs, ws)[1]
    if (hs, ws) != (h, w):
        q = cv2.resize(q, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(q, 0.0, 1.0)
