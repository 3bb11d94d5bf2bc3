"""Lesion describers: one interface, a registry (``morphology``, ``vlm``), and ``fgi describe``.

``morphology`` (the offline default) measures the lesion region and renders the attributes through a
prompt template. ``vlm`` asks a local vision-language model the template's ``vlm_prompt``. The region
is the gaze pseudo-mask of a training image, or a predicted mask at inference; a describer is never
handed a ground-truth mask (``TextItem`` has no field for one).
"""

from __future__ import annotations

import argparse
import colorsys
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from fgi.config import TextConfig, atomic_write_text
from fgi.text.templates import Template

MORPHOLOGY_MODEL_ID = "morphology-v1"  # bump when the measurements or vocabulary below change: it keys the cache

# Vocabulary cut-points of the morphology describer. They define what the words mean (and are part of
# MORPHOLOGY_MODEL_ID), so they are not hyperparameters a trial could change.
_MEASURE_SIDE = 256  # shape measures are scale-free; measuring at most 256 px keeps prepare fast
_THIRD = 1.0 / 3.0  # location grid: thirds of the image
_SMALL_PCT, _LARGE_PCT = 5.0, 20.0  # area % below which a lesion is small, above which large
_ROUND_ECC = 0.6  # eccentricity under this is round (axis ratio under 1.25), over it oval
_SMOOTH_SOLIDITY = 0.9  # solidity at or over this is a smooth boundary
_IRREGULAR_SOLIDITY, _IRREGULAR_CIRC = 0.85, 0.6  # under either is an irregular shape
_RING_FRACTION = 0.05  # surrounding ring width as a fraction of the image side
_BRIGHTNESS_DELTA = 0.04  # luminance difference (0..1) that counts as brighter or darker
_TEXTURE_LOW, _TEXTURE_HIGH = 0.02, 0.06  # std of high-pass luminance: homogeneous / mildly textured / heterogeneous
_GREY_SATURATION = 0.15  # mean colour under this saturation has no hue name


class DescriberError(ValueError):
    """A describer cannot be built or run. The message names the setting and how to fix it."""


@dataclass(frozen=True)
class TextItem:
    """One image to describe.

    Args:
        id: image id (cache key).
        image: the image.
        region: the gaze pseudo-mask (or a predicted mask at inference); never the ground truth.

    Shape:
        image: (H, W, C) uint8 with C = 3 or 1; region: (H, W) bool.
    """

    id: str
    image: np.ndarray
    region: np.ndarray


class Describer(Protocol):
    """What every describer offers."""

    name: str
    model_id: str

    def describe(self, pairs: Sequence[tuple[TextItem, Template]], context: Mapping[str, str]) -> list[str]:
        """One description per (item, template) pair, in order."""
        ...


def _check_item(image: np.ndarray, region: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    region = np.asarray(region)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"{where}: image must be uint8 HxWx3 or HxWx1, got {image.dtype} {image.shape}")
    if region.shape != image.shape[:2]:
        raise ValueError(f"{where}: region shape {region.shape} differs from image shape {image.shape[:2]}")
    return image, region.astype(bool)


def _shrink(image: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    side = max(region.shape)
    if side <= _MEASURE_SIDE:
        return image, region
    step = int(np.ceil(side / _MEASURE_SIDE))
    return image[::step, ::step], region[::step, ::step]


def _location(cy: float, cx: float) -> str:
    vert = "upper" if cy < _THIRD else "lower" if cy > 1 - _THIRD else ""
    horiz = "left" if cx < _THIRD else "right" if cx > 1 - _THIRD else ""
    return " ".join(w for w in (vert, horiz) if w) or "central"


def _perimeter(mask: np.ndarray) -> float:
    """Crofton estimate: 4-connected boundary edge count times pi/4 (exact in expectation over orientation)."""
    padded = np.pad(mask, 1)
    edges = sum(int((padded & ~np.roll(padded, s, axis=a)).sum()) for a in (0, 1) for s in (1, -1))
    return edges * np.pi / 4.0


def _solidity(mask: np.ndarray) -> float:
    """Pixels of the region over pixels whose centres lie in the convex hull of the region's pixel centres."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([ys, xs], 1).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # collinear or tiny: the region is its own hull
        return 1.0
    y0, x0 = ys.min(), xs.min()
    gy, gx = np.mgrid[y0:ys.max() + 1, x0:xs.max() + 1]
    grid = np.stack([gy.ravel(), gx.ravel()], 1).astype(np.float64)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(1)
    return float(min(1.0, mask.sum() / max(int(inside.sum()), 1)))


def _colour_name(rgb: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*[float(c) for c in rgb])
    if s < _GREY_SATURATION:
        return "whitish" if v > 0.75 else "dark" if v < 0.25 else "greyish"
    deg = h * 360.0
    if deg < 20 or deg >= 340:
        return "dark red" if v < 0.45 else "pinkish" if s < 0.45 else "reddish"
    if deg < 50:
        return "brownish" if v < 0.55 else "orange"
    if deg < 70:
        return "yellowish"
    if deg < 170:
        return "greenish"
    if deg < 260:
        return "bluish"
    return "purplish"


def measure_region(image: np.ndarray, region: np.ndarray) -> dict[str, Any]:
    """Measure the attributes of a lesion region that the templates render.

    Location and area use the whole region; shape and boundary use its largest connected component.
    Colour, brightness and texture compare the region with a surrounding ring.

    Args:
        image: the image.
        region: the lesion region (gaze pseudo-mask or predicted mask).

    Shape:
        image: (H, W, C) uint8, C = 3 or 1; region: (H, W) bool.

    Returns:
        ``location, area_pct, size, shape, boundary, color, brightness, texture`` (words or numbers) and
        ``circularity, eccentricity, solidity`` (0..1).
    """
    image, region = _check_item(image, region, "measure_region")
    area_pct = float(region.mean() * 100.0)
    if not region.any():
        return {"location": "undetermined", "area_pct": 0.0, "size": "absent", "shape": "undetermined",
                "boundary": "undetermined", "color": "undetermined", "brightness": "undetermined",
                "texture": "undetermined", "circularity": 0.0, "eccentricity": 0.0, "solidity": 0.0}
    img, reg = _shrink(image, region)
    h, w = reg.shape
    ys, xs = np.nonzero(reg)
    location = _location((ys.mean() + 0.5) / h, (xs.mean() + 0.5) / w)
    size = "small" if area_pct < _SMALL_PCT else "large" if area_pct > _LARGE_PCT else "medium-sized"

    labels, n = ndimage.label(reg)
    main = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1) if n > 1 else reg
    my, mx = np.nonzero(main)
    area = float(main.sum())
    circularity = float(min(1.0, 4.0 * np.pi * area / max(_perimeter(main), 1e-9) ** 2))
    if area >= 3:
        cov = np.cov(np.stack([my, mx]).astype(np.float64))
        lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
        eccentricity = float(np.sqrt(max(0.0, 1.0 - lam[1] / lam[0]))) if lam[0] > 0 else 0.0
    else:
        eccentricity = 0.0
    solidity = _solidity(main)
    boundary = "smooth" if solidity >= _SMOOTH_SOLIDITY else "irregular"
    if solidity < _IRREGULAR_SOLIDITY or circularity < _IRREGULAR_CIRC:
        shape = "irregular"
    else:
        shape = "round" if eccentricity < _ROUND_ECC else "oval"

    pix = img.astype(np.float64) / 255.0
    lum = pix[..., 0] if pix.shape[2] == 1 else pix @ np.array([0.299, 0.587, 0.114])
    ring_w = max(2.0, _RING_FRACTION * max(h, w))
    ring = (ndimage.distance_transform_edt(~reg) <= ring_w) & ~reg
    if ring.any():
        delta = lum[reg].mean() - lum[ring].mean()
        brightness = ("brighter than its surroundings" if delta > _BRIGHTNESS_DELTA
                      else "darker than its surroundings" if delta < -_BRIGHTNESS_DELTA
                      else "as bright as its surroundings")
    else:
        brightness = "filling the image"
    color = "grey" if pix.shape[2] == 1 else _colour_name(pix[reg].mean(0))
    detail = lum - ndimage.gaussian_filter(lum, sigma=2.0)
    tex = float(detail[reg].std())
    texture = "homogeneous" if tex < _TEXTURE_LOW else "mildly textured" if tex < _TEXTURE_HIGH else "heterogeneous"
    return {"location": location, "area_pct": area_pct, "size": size, "shape": shape, "boundary": boundary,
            "color": color, "brightness": brightness, "texture": texture, "circularity": circularity,
            "eccentricity": eccentricity, "solidity": solidity}


class MorphologyDescriber:
    """Offline describer: measured region attributes rendered through the template (no model weights)."""

    name = "morphology"
    model_id = MORPHOLOGY_MODEL_ID

    def describe(self, pairs: Sequence[tuple[TextItem, Template]], context: Mapping[str, str]) -> list[str]:
        """Describe each (item, template) pair; each item is measured once however many templates ask."""
        measured: dict[str, dict[str, Any]] = {}
        out = []
        for item, template in pairs:
            if item.id not in measured:
                try:
                    measured[item.id] = measure_region(item.image, item.region)
                except ValueError as exc:
                    raise ValueError(f"image {item.id!r}: {exc}") from None
            out.append(template.render_text(measured[item.id], context))
        return out


def _model_fingerprint(path: Path) -> str:
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin"):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


def _vlm_folder(text_cfg: TextConfig) -> Path:
    if not text_cfg.vlm_path:
        raise DescriberError(
            "text.describer 'vlm' needs text.vlm_path: the local folder of a vision-language model saved with "
            "save_pretrained (weights are never downloaded); set text.vlm_path in the config or use describer 'morphology'"
        )
    path = Path(text_cfg.vlm_path).expanduser()
    if not (path / "config.json").is_file():
        raise DescriberError(
            f"text.vlm_path {str(path)!r} is not a local model folder with config.json; download the model once "
            f"elsewhere (e.g. huggingface-cli download <model> --local-dir <folder>) and point text.vlm_path at it"
        )
    return path


def describer_model_id(text_cfg: TextConfig) -> str:
    """Cache identity of the configured describer, without loading any model.

    Raises:
        DescriberError: for describer 'vlm' without a usable ``text.vlm_path``.
    """
    if text_cfg.describer == "morphology":
        return MORPHOLOGY_MODEL_ID
    if text_cfg.describer == "vlm":
        path = _vlm_folder(text_cfg)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.name)
        return f"vlm-{safe}-{_model_fingerprint(path)}-greedy{text_cfg.vlm_max_new_tokens}"
    raise DescriberError(f"unknown text.describer {text_cfg.describer!r}; valid describers are {sorted(DESCRIBERS)}")


class VLMDescriber:
    """A local vision-language model asked each template's ``vlm_prompt`` (batched, greedy).

    Args:
        text_cfg: ``vlm_path``, ``vlm_max_new_tokens`` and ``vlm_batch_size``.
        device: where the model runs; default CUDA when present, else CPU.
    """

    name = "vlm"

    def __init__(self, text_cfg: TextConfig, device: torch.device | None = None) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.path = _vlm_folder(text_cfg)
        self.model_id = describer_model_id(text_cfg)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.max_new_tokens = text_cfg.vlm_max_new_tokens
        self.batch_size = text_cfg.vlm_batch_size
        try:
            self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
            self.model = AutoModelForImageTextToText.from_pretrained(
                self.path, local_files_only=True, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise DescriberError(f"text.vlm_path {str(self.path)!r}: cannot load a processor and an "
                                 f"image-text-to-text model from it ({exc})") from None
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # batched decoder-only generation continues from the right edge
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token

    def _prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    @torch.inference_mode()
    def describe(self, pairs: Sequence[tuple[TextItem, Template]], context: Mapping[str, str]) -> list[str]:
        """Generate one answer per (item, template) pair, ``vlm_batch_size`` at a time."""
        from PIL import Image

        out: list[str] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            images = []
            for item, _ in chunk:
                image, _ = _check_item(item.image, item.region, f"image {item.id!r}")
                rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
                images.append(Image.fromarray(rgb))
            prompts = [self._prompt(t.prompt(context)) for _, t in chunk]
            inputs = self.processor(images=images, text=prompts, padding=True, return_tensors="pt").to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            generated = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
            new = generated[:, inputs["input_ids"].shape[1]:]
            out.extend(" ".join(t.split()) for t in self.processor.batch_decode(new, skip_special_tokens=True))
        return out


DESCRIBERS: dict[str, Any] = {
    "morphology": lambda text_cfg, device: MorphologyDescriber(),
    "vlm": lambda text_cfg, device: VLMDescriber(text_cfg, device),
}


def make_describer(text_cfg: TextConfig, device: torch.device | None = None) -> Describer:
    """Build the describer named by ``text.describer``; an unknown name lists the valid ones."""
    if text_cfg.describer not in DESCRIBERS:
        raise DescriberError(f"unknown text.describer {text_cfg.describer!r}; valid describers are {sorted(DESCRIBERS)}")
    return DESCRIBERS[text_cfg.describer](text_cfg, device)


def read_descriptions(path: Path) -> list[dict[str, str]]:
    """Records of a descriptions JSONL file (empty when it does not exist).

    Raises:
        ValueError: naming the file and line of a malformed record.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc}); delete the file to rebuild it") from None
        if not isinstance(rec, dict) or not {"id", "template", "describer", "model", "text"} <= set(rec):
            raise ValueError(f"{path}:{n}: a record needs id, template, describer, model and text")
        records.append(rec)
    return records


def write_descriptions(path: Path, records: Sequence[Mapping[str, str]]) -> None:
    """Write description records as JSONL, atomically."""
    atomic_write_text(path, "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in records))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fgi describe``."""
    parser.add_argument("--config", type=Path, help="YAML config (defaults apply without one)")
    parser.add_argument("--dataset", help="dataset registry name (overrides data.dataset)")
    parser.add_argument("--template", help="prompt template (overrides text.template)")
    parser.add_argument("--n", type=int, default=5, help="how many images to print (default 5)")
    parser.add_argument("--cache-dir", type=Path, help="a prepared cache folder (default: the dataset's cache)")


def main(args: argparse.Namespace) -> int:
    """Print the cached descriptions of a few images."""
    from fgi import config as fconfig
    from fgi.text.pipeline import load_descriptions

    cfg = fconfig.load_yaml(args.config) if args.config else fconfig.Config()
    updates: dict[str, Any] = {}
    if args.dataset:
        updates["data.dataset"] = args.dataset
    if args.template:
        updates["text.template"] = args.template
    cfg = fconfig.override(cfg, updates) if updates else cfg
    if args.n < 1:
        raise SystemExit("fgi describe: --n must be at least 1")
    if args.cache_dir is not None:
        cache_dir = args.cache_dir
    else:
        try:
            from fgi.data.dataset import ensure_prepared
        except ImportError as exc:
            raise SystemExit(f"fgi describe: the data pipeline is unavailable ({exc}); pass --cache-dir") from None
        cache_dir = ensure_prepared(cfg)
    from fgi.text.templates import TemplateError

    try:
        descriptions = load_descriptions(Path(cache_dir), cfg.text.template, cfg.text)
    except (TemplateError, FileNotFoundError, DescriberError) as exc:
        raise SystemExit(f"fgi describe: {exc}") from None
    print(f"# dataset {cfg.data.dataset}, template {cfg.text.template}, describer {cfg.text.describer}")
    for image_id in sorted(descriptions)[: args.n]:
        print(f"{image_id}\t{descriptions[image_id]}")
    return 0


__all__ = [
    "DESCRIBERS", "Describer", "DescriberError", "MORPHOLOGY_MODEL_ID", "MorphologyDescriber", "TextItem",
    "VLMDescriber", "add_arguments", "describer_model_id", "main", "make_describer", "measure_region",
    "read_descriptions", "write_descriptions",
]
