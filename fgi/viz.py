"""Overlay figures of weak labels and predictions (matplotlib, Agg backend; returns PNG bytes)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def overlay_figure(image: np.ndarray, panels: list[tuple[str, np.ndarray | None, str]], title: str = "",
                   caption: str = "") -> bytes:
    """One row of panels: the image, then each map drawn over it.

    Args:
        image: (H, W, C) uint8 image, C = 1 or 3.
        panels: (label, map, kind) per panel; kind "soft" draws a heat colormap, "mask" a filled contour,
            "levels" an integer map (0 none, 1 loose only, 2 tight). A None map is drawn as "n/a".
        title: figure title (an image id).
        caption: text under the panels (the lesion description), wrapped to the figure width.

    Returns:
        PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = _rgb(image)
    cmap_img = "gray" if img.ndim == 2 else None
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(2.6 * (1 + len(panels)), 2.9))
    axes[0].imshow(img, cmap=cmap_img)
    axes[0].set_title("image", fontsize=9)
    for ax, (label, m, kind) in zip(axes[1:], panels, strict=True):
        ax.imshow(img, cmap=cmap_img)
        if m is None:
            ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center", color="white")
        elif kind == "soft":
            ax.imshow(m, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        elif kind == "levels":
            ax.imshow(np.ma.masked_equal(m, 0), cmap="autumn_r", alpha=0.55, vmin=1, vmax=2)
        else:
            ax.imshow(np.ma.masked_equal(m.astype(np.uint8), 0), cmap="summer", alpha=0.5, vmin=0, vmax=1)
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(label, fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    if caption:
        import textwrap

        wrapped = textwrap.fill(caption, width=int(32 * (1 + len(panels))))
        lines = wrapped.count("\n") + 1
        fig.set_figheight(2.9 + 0.18 * lines)
        fig.text(0.5, 0.01, wrapped, ha="center", va="bottom", fontsize=7, wrap=True)
        fig.tight_layout(rect=(0, 0.18 * lines / fig.get_figheight() + 0.02, 1, 1))
    else:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def weak_label_figure(image: np.ndarray, heatmap: np.ndarray, crf: np.ndarray, tight_level: float,
                      loose_level: float, mask: np.ndarray | None, title: str = "", level_source: str = "crf",
                      caption: str = "") -> bytes:
    """Image | gaze heatmap | CRF map | gaze levels | ground truth.

    Args:
        image: (H, W, C) uint8.
        heatmap: (H, W) soft gaze heatmap in [0, 1].
        crf: (H, W) soft CRF map in [0, 1].
        tight_level: threshold of the tight level.
        loose_level: threshold of the loose level.
        mask: (H, W) bool ground truth, or None.
        title: figure title.
        level_source: "crf" or "heatmap", the map the levels threshold.
        caption: the lesion description shown under the panels.
    """
    soft = crf if level_source == "crf" else heatmap
    levels = (soft >= loose_level).astype(np.uint8) + (soft >= tight_level).astype(np.uint8)
    return overlay_figure(image, [
        ("gaze heatmap", heatmap, "soft"),
        ("CRF map", crf, "soft"),
        (f"levels {tight_level:g}/{loose_level:g}", levels, "levels"),
        ("ground truth", mask, "mask"),
    ], title, caption)


def prediction_figure(image: np.ndarray, heatmap: np.ndarray | None, tight: np.ndarray | None,
                      prediction: np.ndarray, mask: np.ndarray | None, title: str = "") -> bytes:
    """Image | gaze heatmap | tight pseudo-mask | prediction | ground truth (for tracking)."""
    return overlay_figure(image, [
        ("gaze heatmap", heatmap, "soft"),
        ("pseudo-mask", tight, "mask"),
        ("prediction", prediction, "mask"),
        ("ground truth", mask, "mask"),
    ], title)


def importance_figure(importances: Mapping[str, float]) -> Any:
    """Horizontal bars of Optuna parameter importances, largest on top; returns a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="#3b75af")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("Optuna parameter importances")
    fig.tight_layout()
    return fig


def front_figure(points: Sequence[Mapping[str, float]], front: Sequence[int], objectives: Sequence[str]) -> Any:
    """Every trial on its first two objectives, the Pareto front's points joined and circled; a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = objectives[0], objectives[1]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([p[x] for p in points], [p[y] for p in points], color="#9a9a9a", label="trials")
    on = sorted((points[i] for i in front), key=lambda p: p[x])
    ax.plot([p[x] for p in on], [p[y] for p in on], "o-", color="#c0392b", label="Pareto front")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    title = "Pareto front" + (f" (first two of {len(objectives)} objectives)" if len(objectives) > 2 else "")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def validation_overlay(trainer: Any, batch: Mapping[str, Any], mean: np.ndarray, std: np.ndarray, step: int,
                       threshold: float = 0.5) -> bytes:
    """``prediction_figure`` of a batch's first image as ``trainer`` predicts it at ``step``.

    Args:
        trainer: an engine with ``cfg`` and ``predict(image, text, text_mask)``.
        batch: a validation batch ("image", "id", and when present "tight", "mask", "text", "text_mask").
        mean: per-channel mean the images were normalized with.
        std: per-channel standard deviation the images were normalized with.
        step: the training step (in the title).
        threshold: probability above which a pixel is drawn as predicted lesion.

    Shape:
        batch["image"] (B, C, H, W); mean and std (C,).

    Returns:
        PNG bytes.
    """
    text, text_mask = (None, None) if trainer.cfg.text.mode == "none" else (batch.get("text"), batch.get("text_mask"))
    probs = trainer.predict(batch["image"][:1], None if text is None else text[:1],
                            None if text_mask is None else text_mask[:1]).cpu()
    chw = batch["image"][0].float().cpu().numpy()
    hwc = (chw.transpose(1, 2, 0) * std + mean).clip(0, 1)
    image = (hwc * 255).round().astype(np.uint8)

    def plane(key: str) -> np.ndarray | None:
        return batch[key][0, 0].cpu().numpy().astype(bool) if key in batch else None

    return prediction_figure(image, None, plane("tight"), probs[0, 0].numpy() > threshold, plane("mask"),
                             f"{batch['id'][0]} at step {step}")


def tint(image: np.ndarray, mask: np.ndarray, color: tuple[float, float, float] = (255.0, 0.0, 0.0),
         alpha: float = 0.5) -> np.ndarray:
    """The image with ``color`` blended in at ``alpha`` where ``mask`` is set.

    Shape:
        image (H, W, 3) uint8 RGB; mask (H, W) bool; returns (H, W, 3) uint8.
    """
    out = np.asarray(image, dtype=np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, dtype=np.float32)
    return out.clip(0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W) or (H, W, 3) uint8 array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = ["front_figure", "importance_figure", "overlay_figure", "png_bytes", "prediction_figure", "tint", "validation_overlay", "weak_label_figure"]
