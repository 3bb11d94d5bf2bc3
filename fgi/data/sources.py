"""Dataset adapters: raw folders and gaze CSVs to an index of items, and items to loaded samples.

One registry (``SOURCES``) maps a dataset name to an adapter. ``index()`` checks the layout, reads the
fixation CSV and the split files, and returns light ``SourceItem`` records (paths, fixations, split);
``load_sample`` decodes one item in a worker process. Every bad input raises ``DataError`` naming the
file and the reason.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fgi.config import Config, DataConfig, GazeConfig
from fgi.seed import numpy_rng

SPLIT_NAMES = ("train", "val", "test")
FIXATION_COLUMNS = ("IMAGE", "CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION")
_MASK_THRESHOLD = 127  # JPEG masks: Kvasir leaves no grey values between 64 and 191
_MRI_PERCENTILES = (0.5, 99.5)  # per-slice intensity window of MRI slices, robust to a few hot pixels
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DataError(ValueError):
    """Bad raw input. The message names the file (and line or value) and the reason."""


@dataclass(frozen=True, eq=False)
class SourceItem:
    """One raw item as indexed (nothing decoded yet).

    Args:
        id: image id (file stem).
        split: "train", "val" or "test".
        image_path: image file; empty for synthetic items.
        mask_path: ground-truth mask file; empty when the split has no masks.
        fixations: (N, 3) float32 x, y (0..1), duration ms; None when there is no gaze for the item.
        expected_hw: (height, width) the gaze CSV claims for the image, checked on load.
        gaze_file: where the fixations came from, for error messages.
        simulate: draw simulated fixations from the ground-truth mask on load (ISIC training images).
        synthetic_index: index into the synthetic generator; -1 for file-backed items.
        group: items of one group stay in one split when validation is carved (an MRI case).
    """

    id: str
    split: str
    image_path: str = ""
    mask_path: str = ""
    fixations: np.ndarray | None = None
    expected_hw: tuple[int, int] | None = None
    gaze_file: str = ""
    simulate: bool = False
    synthetic_index: int = -1
    group: str = ""

    @property
    def has_gaze(self) -> bool:
        """Whether fixations exist or will be simulated for this item."""
        return self.simulate or self.fixations is not None and len(self.fixations) > 0


@dataclass(frozen=True, eq=False)
class Sample:
    """One decoded item.

    Shape:
        image: (H, W, C) uint8 with C = 1 or 3; mask: (H, W) bool or None; fixations: (N, 3) float32 or None.
    """

    id: str
    split: str
    image: np.ndarray
    mask: np.ndarray | None
    fixations: np.ndarray | None


@dataclass
class SourceIndex:
    """What an adapter found: the items, and what the gaze CSV held that matched no image."""

    items: list[SourceItem]
    channels: int
    unmatched_gaze: list[str] = field(default_factory=list)


def _stem(name: str) -> str:
    p = Path(name.strip())
    return p.stem if p.suffix.lower() in _IMAGE_EXTS + (".dcm",) else p.name


def read_fixations(path: Path) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """Read a GazeMedSeg fixation CSV.

    Args:
        path: the CSV (columns IMAGE, CURRENT_FIX_X, CURRENT_FIX_Y, CURRENT_FIX_DURATION, and optionally
            CURRENT_FIX_INDEX, IMAGE_HEIGHT, IMAGE_WIDTH).

    Returns:
        (fixations by image id as (N, 3) float32 arrays in viewing order, (height, width) by image id
        where the CSV gives them).

    Raises:
        DataError: missing file or columns, a non-numeric value, a fixation outside [0, 1], a negative
            duration, or image sizes that change within one image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: fixation CSV not found")
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in FIXATION_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing CSV columns {missing}; found {header}")
        has_size = "IMAGE_HEIGHT" in header and "IMAGE_WIDTH" in header
        has_index = "CURRENT_FIX_INDEX" in header
        for line, row in enumerate(reader, start=2):
            image = _stem(row["IMAGE"] or "")
            if not image:
                raise DataError(f"{path}: line {line}: empty IMAGE")
            try:
                x, y = float(row["CURRENT_FIX_X"]), float(row["CURRENT_FIX_Y"])
                dur = float(row["CURRENT_FIX_DURATION"])
                order = float(row["CURRENT_FIX_INDEX"]) if has_index else float(line)
            except (TypeError, ValueError):
                raise DataError(f"{path}: line {line}: non-numeric fixation value in {dict(row)}") from None
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise DataError(f"{path}: line {line}: fixation ({x}, {y}) of {image} lies outside [0, 1]")
            if not dur >= 0.0:
                raise DataError(f"{path}: line {line}: negative or missing duration {dur} for {image}")
            if has_size:
                try:
                    hw = (int(float(row["IMAGE_HEIGHT"])), int(float(row["IMAGE_WIDTH"])))
                except (TypeError, ValueError):
                    raise DataError(f"{path}: line {line}: non-numeric IMAGE_HEIGHT/IMAGE_WIDTH for {image}") from None
                if sizes.setdefault(image, hw) != hw:
                    raise DataError(f"{path}: line {line}: {image} has size {hw} here but {sizes[image]} earlier")
            rows.setdefault(image, []).append((order, x, y, dur))
    fix = {}
    for image, r in rows.items():
        arr = np.asarray(sorted(r), dtype=np.float64)
        fix[image] = arr[:, 1:].astype(np.float32)
    return fix, sizes


def read_split_files(split_dir: Path, known: set[str]) -> dict[str, list[str]]:
    """Read ``train.txt``, ``val.txt`` and ``test.txt`` (one id per line, extension optional) where present.

    Raises:
        DataError: an id that names no image, or an id listed in two splits.
    """
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split in SPLIT_NAMES:
        p = split_dir / f"{split}.txt"
        if not p.is_file():
            continue
        ids = []
        for line_no, line in enumerate(p.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            i = _stem(line)
            if i not in known:
                raise DataError(f"{p}: line {line_no}: id {i!r} matches no image")
            if i in seen:
                raise DataError(f"{p}: line {line_no}: id {i!r} is already in {seen[i]}.txt")
            seen[i] = split
            ids.append(i)
        out[split] = ids
    return out


def carve_validation(items: list[SourceItem], fraction: float, seed: int) -> list[SourceItem]:
    """Move a seeded ``fraction`` of the training items (whole groups) to "val".

    Args:
        items: indexed items; only "train" ones are candidates.
        fraction: share of training groups moved.
        seed: ``DataConfig.split_seed``; the subset depends only on it and the ids.
    """
    train = [it for it in items if it.split == "train"]
    groups = sorted({it.group or it.id for it in train})
    n_val = int(round(fraction * len(groups)))
    if fraction > 0 and len(groups) > 1:
        n_val = min(max(n_val, 1), len(groups) - 1)
    rng = numpy_rng(seed)
    chosen = {groups[i] for i in rng.permutation(len(groups))[:n_val]}
    out = []
    for it in items:
        if it.split == "train" and (it.group or it.id) in chosen:
            it = SourceItem(**{**it.__dict__, "split": "val"})
        out.append(it)
    return out


def _list_images(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in exts and not p.name.startswith(".")}


def _gaze_csv(cfg: DataConfig) -> Path:
    if not cfg.fixations:
        raise DataError(f"dataset {cfg.dataset!r} needs a fixation CSV: pass --fixations PATH (data.fixations)")
    return Path(cfg.fixations).expanduser()


def _assign_splits(items: dict[str, SourceItem], cfg: DataConfig) -> list[SourceItem]:
    split_dir = Path(cfg.split_dir or cfg.root).expanduser()
    splits = read_split_files(split_dir, set(items))
    listed = {i for ids in splits.values() for i in ids}
    out = []
    for split, ids in splits.items():
        out.extend(SourceItem(**{**items[i].__dict__, "split": split}) for i in ids)
    if "train" not in splits:
        out.extend(it for i, it in items.items() if i not in listed)
    if "val" not in splits:
        out = carve_validation(out, cfg.val_fraction, cfg.split_seed)
    return out


def _index_gaze_folder(cfg: DataConfig, image_exts: tuple[str, ...], group_of: Callable[[str], str]) -> SourceIndex:
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found (data.root / --root)")
    images = _list_images(root / "images", image_exts)
    if not images:
        raise DataError(f"{root / 'images'}: no images with extensions {list(image_exts)}")
    mask_dir = root / "masks"
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: mask folder not found")
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS}
    csv_path = _gaze_csv(cfg)
    fix, sizes = read_fixations(csv_path)
    items = {}
    for i, p in images.items():
        if i not in masks:
            raise DataError(f"{p}: mask is missing (expected {mask_dir / (i + '.*')})")
        items[i] = SourceItem(id=i, split="train", image_path=str(p), mask_path=str(masks[i]), fixations=fix.get(i),
                              expected_hw=sizes.get(i), gaze_file=str(csv_path), group=group_of(i))
    return SourceIndex(items=_assign_splits(items, cfg), channels=0, unmatched_gaze=sorted(set(fix) - set(images)))


class KvasirSource:
    """Kvasir-SEG: ``images/<id>.jpg``, ``masks/<id>.jpg`` (RGB JPEG, binarized at 127), GazeMedSeg CSV."""

    channels = 3

    def __init__(self, data: DataConfig, gaze: GazeConfig) -> None:
        self.data, self.gaze = data, gaze

    def index(self) -> SourceIndex:
        """Index the folder, the fixation CSV and the split files."""
        idx = _index_gaze_folder(self.data, (".jpg", ".jpeg", ".png"), lambda i: "")
        idx.channels = self.channels
        return idx


class NciIsbiSource:
    """NCI-ISBI 2013 axial slices: ``images/<case>_<slice>.dcm|.png``, ``masks/<case>_<slice>.png``.

    Slices of one case stay in one split when validation is carved. DICOM needs the ``dicom`` extra.
    """

    channels = 1

    def __init__(self, data: DataConfig, gaze: GazeConfig) -> None:
        self.data, self.gaze = data, gaze

    def index(self) -> SourceIndex:
        """Index the folder, the fixation CSV and the split files."""
        idx = _index_gaze_folder(self.data, (".dcm", ".png"), lambda i: i.rsplit("_", 1)[0])
        idx.channels = self.channels
        return idx


class IsicSource:
    """ISIC 2018 Task 1 with simulated gaze on training images (``GazeConfig.sim_*``).

    Layout: ``ISIC2018_Task1-2_<Part>_Input/ISIC_*.jpg`` and
    ``ISIC2018_Task1_<Part>_GroundTruth/ISIC_*_segmentation.png`` for Part in Training, Validation, Test
    (only Training is required; a missing ground-truth folder for Validation/Test means no masks there).
    """

    channels = 3
    PARTS = {"train": "Training", "val": "Validation", "test": "Test"}

    def __init__(self, data: DataConfig, gaze: GazeConfig) -> None:
        self.data, self.gaze = data, gaze

    def index(self) -> SourceIndex:
        """Index the Training (and optional Validation and Test) folders."""
        root = Path(self.data.root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: dataset root not found (data.root / --root)")
        items: list[SourceItem] = []
        for split, part in self.PARTS.items():
            in_dir = root / f"ISIC2018_Task1-2_{part}_Input"
            gt_dir = root / f"ISIC2018_Task1_{part}_GroundTruth"
            if not in_dir.is_dir():
                if split == "train":
                    raise DataError(f"{in_dir}: ISIC training input folder not found")
                continue
            images = {i: p for i, p in _list_images(in_dir, (".jpg", ".jpeg", ".png")).items() if i.startswith("ISIC_")}
            if not images:
                raise DataError(f"{in_dir}: no ISIC_*.jpg images")
            if not gt_dir.is_dir() and split == "train":
                raise DataError(f"{gt_dir}: ISIC training ground-truth folder not found (gaze is simulated from it)")
            for i, p in images.items():
                mask = gt_dir / f"{i}_segmentation.png"
                if gt_dir.is_dir() and not mask.is_file():
                    raise DataError(f"{p}: mask is missing (expected {mask})")
                items.append(SourceItem(id=i, split=split, image_path=str(p),
                                        mask_path=str(mask) if gt_dir.is_dir() else "", simulate=split == "train"))
        if not any(it.split == "val" for it in items):
            items = carve_validation(items, self.data.val_fraction, self.data.split_seed)
        return SourceIndex(items=items, channels=self.channels)


class SyntheticSource:
    """The built-in synthetic generator (``fgi.data.synthetic``) with its simulated gaze."""

    channels = 3

    def __init__(self, data: DataConfig, gaze: GazeConfig) -> None:
        self.data, self.gaze = data, gaze

    def index(self) -> SourceIndex:
        """Item records for ``DataConfig.synthetic_{train,val,test}`` samples (generated on load)."""
        counts = {"train": self.data.synthetic_train, "val": self.data.synthetic_val, "test": self.data.synthetic_test}
        items = [SourceItem(id=f"syn-{split}-{k:05d}", split=split, synthetic_index=k, simulate=True)
                 for split, n in counts.items() for k in range(n)]
        return SourceIndex(items=items, channels=self.channels)


SOURCES: dict[str, type] = {
    "kvasir": KvasirSource,
    "nci-isbi": NciIsbiSource,
    "isic": IsicSource,
    "synthetic": SyntheticSource,
}


def get_source(cfg: Config) -> KvasirSource | NciIsbiSource | IsicSource | SyntheticSource:
    """The adapter of ``cfg.data.dataset``.

    Raises:
        DataError: an unknown dataset name (the message lists the valid ones).
    """
    name = cfg.data.dataset
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; valid datasets are {sorted(SOURCES)}")
    return SOURCES[name](cfg.data, cfg.gaze)


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _read_dicom(path: str) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise DataError(f"{path}: reading DICOM needs pydicom; install the extra: pip install 'fgi[dicom]'") from None
    try:
        return np.asarray(pydicom.dcmread(path).pixel_array)
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise DataError(f"{path}: cannot decode DICOM ({type(exc).__name__}: {exc})") from None


def _decode(path: str, flags: int) -> np.ndarray:
    if path.lower().endswith(".dcm"):
        return _read_dicom(path)
    buf = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise DataError(f"{path}: cannot decode image (corrupt or not an image file)")
    return img


def normalize_slice(arr: np.ndarray) -> np.ndarray:
    """Per-slice intensity normalization of an MRI slice to uint8 (robust percentile window).

    Shape:
        arr: (H, W) any numeric dtype; returns (H, W) uint8.
    """
    a = arr.astype(np.float32)
    lo, hi = np.percentile(a, _MRI_PERCENTILES)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return (np.clip((a - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_image(path: str, channels: int) -> np.ndarray:
    """Decode an image file to (H, W, C) uint8 with C = ``channels``; clear errors name the file."""
    img = _decode(path, cv2.IMREAD_UNCHANGED)
    if channels == 1:
        if img.ndim == 3:
            img = img[:, :, :3].mean(axis=2) if img.shape[2] >= 3 else img[:, :, 0]
        return normalize_slice(img)[:, :, None]
    if img.dtype != np.uint8:
        img = normalize_slice(img) if img.ndim == 2 else (img / max(float(img.max()), 1.0) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def load_mask(path: str, hw: tuple[int, int]) -> np.ndarray:
    """Decode a mask file to (H, W) bool and check it matches its image size ``hw``."""
    m = _decode(path, cv2.IMREAD_GRAYSCALE)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.shape != hw:
        raise DataError(f"{path}: mask size {m.shape[1]}x{m.shape[0]} differs from its image {hw[1]}x{hw[0]}")
    # 0/255 masks (JPEG noise included) binarize at 127; label masks (NCI-ISBI: 1, 2) are foreground where > 0
    return m > _MASK_THRESHOLD if m.max() > _MASK_THRESHOLD else m > 0


def simulation_seed(item_id: str) -> int:
    """Seed of an item's simulated scanpath: a stable hash of its id (the same on every machine)."""
    return zlib.crc32(item_id.encode())


def load_sample(item: SourceItem, cfg: Config, channels: int) -> Sample:
    """Decode one item, check it against its gaze record and simulate gaze where needed.

    Args:
        item: the indexed item.
        cfg: the run config (data, gaze).
        channels: image channels of the dataset (1 for MRI, 3 for RGB).

    Raises:
        DataError: an undecodable image or mask, a size that disagrees with IMAGE_HEIGHT/IMAGE_WIDTH, or
            a mask whose size differs from its image.
    """
    if item.synthetic_index >= 0:
        from fgi.data.synthetic import make_sample

        s = make_sample(item.synthetic_index, cfg.data.image_size, cfg.data.synthetic_seed, item.split, cfg.gaze)
        return Sample(id=item.id, split=item.split, image=s.image, mask=s.mask, fixations=s.fixations)
    image = load_image(item.image_path, channels)
    hw = image.shape[:2]
    if item.expected_hw is not None and tuple(item.expected_hw) != hw:
        raise DataError(
            f"{item.image_path}: image is {hw[1]}x{hw[0]} (WxH) but {item.gaze_file} gives "
            f"IMAGE_WIDTH={item.expected_hw[1]}, IMAGE_HEIGHT={item.expected_hw[0]}"
        )
    mask = load_mask(item.mask_path, hw) if item.mask_path else None
    fixations = item.fixations
    if item.simulate:
        from fgi.data.scanpath import simulate_fixations

        if mask is None:
            raise DataError(f"{item.image_path}: simulated gaze needs the ground-truth mask, which is missing")
        fixations = simulate_fixations(mask, numpy_rng(simulation_seed(item.id)), cfg.gaze)
    return Sample(id=item.id, split=item.split, image=image, mask=mask, fixations=fixations)


__all__ = [
    "DataError", "FIXATION_COLUMNS", "SOURCES", "SPLIT_NAMES", "Sample", "SourceIndex", "SourceItem",
    "carve_validation", "get_source", "load_sample", "normalize_slice", "read_fixations", "read_split_files",
    "simulation_seed",
]
