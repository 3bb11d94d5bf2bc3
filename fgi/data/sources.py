"""Dataset adapters: raw folders and gaze CSVs to an index of items, and items to loaded samples.

There is one adapter per raw layout (``LAYOUTS``); the dataset registry (``fgi.datasets``) says
which layout each dataset name uses. ``index()`` checks the layout, reads the fixation CSV and the split
files, and returns light ``SourceItem`` records (paths, fixations, split); ``load_sample`` decodes one
item in a worker process. Every bad input raises ``DataError`` naming the file and the reason.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fgi.config import Config, DataConfig, GazeConfig
from fgi.data.errors import DataError
from fgi.data.fixations import read_fixations
from fgi.data.io import IMAGE_EXTS, list_images, load_image, load_mask
from fgi.data.splits import assign_splits, carve_validation
from fgi.datasets import DatasetInfo, get_dataset
from fgi.seed import numpy_rng


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
    """What an adapter found.

    Args:
        items: the indexed items.
        unmatched_gaze: image ids of the gaze CSV that match no image.
        unlisted: image ids that no split file lists while ``train.txt`` exists (left out of ``items``).
    """

    items: list[SourceItem]
    unmatched_gaze: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)


def _carve(items: list[SourceItem], data: DataConfig) -> list[SourceItem]:
    """Move a seeded ``data.val_fraction`` of the training groups to "val"."""
    chosen = carve_validation([it.group or it.id for it in items if it.split == "train"], data.val_fraction,
                              data.split_seed)
    return [replace(it, split="val") if it.split == "train" and (it.group or it.id) in chosen else it for it in items]


def _root(data: DataConfig) -> Path:
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found (data.root / --root)")
    return root


class FolderSource:
    """``images/<id>.<ext>`` and ``masks/<id>.<ext>`` under ``data.root`` with a GazeMedSeg fixation CSV.

    Used by Kvasir-SEG (RGB JPEG masks, binarized at 127) and NCI-ISBI 2013 axial slices
    (``<case>_<slice>.dcm|.png``, label PNG masks; DICOM needs the ``dicom`` extra). Splits come from the
    split files of ``data.split_dir`` (default: the root); without ``val.txt`` validation is carved.

    Args:
        info: the dataset's registry entry (image extensions, case grouping).
        data: the data config.
        gaze: the gaze config.
    """

    def __init__(self, info: DatasetInfo, data: DataConfig, gaze: GazeConfig) -> None:
        self.info, self.data, self.gaze = info, data, gaze

    def index(self) -> SourceIndex:
        """Index the folder, the fixation CSV and the split files."""
        root = _root(self.data)
        exts = self.info.image_exts
        images = list_images(root / "images", exts)
        if not images:
            raise DataError(f"{root / 'images'}: no images with extensions {list(exts)}")
        mask_dir = root / "masks"
        if not mask_dir.is_dir():
            raise DataError(f"{mask_dir}: mask folder not found")
        masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS}
        if not self.data.fixations:
            raise DataError(f"dataset {self.data.dataset!r} needs a fixation CSV: data.fixations is empty (set it in the "
                            "config file, or with --fixations where a command has it: fgi prepare, train.py)")
        csv_path = Path(self.data.fixations).expanduser()
        fix, sizes = read_fixations(csv_path)
        items = {}
        for i, p in images.items():
            if i not in masks:
                raise DataError(f"{p}: mask is missing (expected {mask_dir / (i + '.*')})")
            items[i] = SourceItem(id=i, split="train", image_path=str(p), mask_path=str(masks[i]), fixations=fix.get(i),
                                  expected_hw=sizes.get(i), gaze_file=str(csv_path), group=self.info.group_of(i))
        assignment = assign_splits(list(items), Path(self.data.split_dir or self.data.root).expanduser())
        out = [replace(items[i], split=s) for i, s in assignment.split_of.items()]
        if "val" not in assignment.files:
            out = _carve(out, self.data)
        return SourceIndex(items=out, unmatched_gaze=sorted(set(fix) - set(images)), unlisted=assignment.unlisted)


class IsicSource:
    """ISIC 2018 Task 1 with simulated gaze on training images (``GazeConfig.sim_*``).

    Layout: ``ISIC2018_Task1-2_<Part>_Input/ISIC_*.jpg`` and
    ``ISIC2018_Task1_<Part>_GroundTruth/ISIC_*_segmentation.png`` for Part in Training, Validation, Test
    (only Training is required; a missing ground-truth folder for Validation/Test means no masks there).

    Args:
        info: the dataset's registry entry.
        data: the data config.
        gaze: the gaze config.
    """

    PARTS = {"train": "Training", "val": "Validation", "test": "Test"}
    MASK_SUFFIX = "_segmentation"  # ISIC_<n>_segmentation.png is the mask of ISIC_<n>.jpg

    @classmethod
    def folders(cls, root: Path, split: str) -> tuple[Path, Path]:
        """The input and ground-truth folders of one split ("train", "val" or "test") under ``root``."""
        part = cls.PARTS[split]
        return root / f"ISIC2018_Task1-2_{part}_Input", root / f"ISIC2018_Task1_{part}_GroundTruth"

    def __init__(self, info: DatasetInfo, data: DataConfig, gaze: GazeConfig) -> None:
        self.info, self.data, self.gaze = info, data, gaze

    def index(self) -> SourceIndex:
        """Index the Training (and optional Validation and Test) folders."""
        root = _root(self.data)
        items: list[SourceItem] = []
        for split in self.PARTS:
            in_dir, gt_dir = self.folders(root, split)
            if not in_dir.is_dir():
                if split == "train":
                    raise DataError(f"{in_dir}: ISIC training input folder not found")
                continue
            images = {i: p for i, p in list_images(in_dir, (".jpg", ".jpeg", ".png")).items() if i.startswith("ISIC_")}
            if not images:
                raise DataError(f"{in_dir}: no ISIC_*.jpg images")
            if not gt_dir.is_dir() and split == "train":
                raise DataError(f"{gt_dir}: ISIC training ground-truth folder not found (gaze is simulated from it)")
            for i, p in images.items():
                mask = gt_dir / f"{i}{self.MASK_SUFFIX}.png"
                if gt_dir.is_dir() and not mask.is_file():
                    raise DataError(f"{p}: mask is missing (expected {mask})")
                items.append(SourceItem(id=i, split=split, image_path=str(p),
                                        mask_path=str(mask) if gt_dir.is_dir() else "", simulate=split == "train"))
        if not any(it.split == "val" for it in items):
            items = _carve(items, self.data)
        return SourceIndex(items=items)


class SyntheticSource:
    """The built-in synthetic generator (``fgi.data.synthetic``) with its simulated gaze.

    Args:
        info: the dataset's registry entry.
        data: the data config (``synthetic_*`` counts).
        gaze: the gaze config.
    """

    def __init__(self, info: DatasetInfo, data: DataConfig, gaze: GazeConfig) -> None:
        self.info, self.data, self.gaze = info, data, gaze

    def index(self) -> SourceIndex:
        """Item records for ``DataConfig.synthetic_{train,val,test}`` samples (generated on load)."""
        counts = {"train": self.data.synthetic_train, "val": self.data.synthetic_val, "test": self.data.synthetic_test}
        items = [SourceItem(id=f"syn-{split}-{k:05d}", split=split, synthetic_index=k, simulate=True)
                 for split, n in counts.items() for k in range(n)]
        return SourceIndex(items=items)


Source = FolderSource | IsicSource | SyntheticSource
LAYOUTS: dict[str, type[Source]] = {"folder": FolderSource, "isic": IsicSource, "synthetic": SyntheticSource}


def get_source(cfg: Config) -> Source:
    """The adapter of ``cfg.data.dataset``.

    Raises:
        DataError: an unknown dataset name (the message lists the valid ones).
    """
    info = get_dataset(cfg.data.dataset)
    return LAYOUTS[info.layout](info, cfg.data, cfg.gaze)


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
        from fgi.data.gaze import simulate_fixations

        if mask is None:
            raise DataError(f"{item.image_path}: simulated gaze needs the ground-truth mask, which is missing")
        fixations = simulate_fixations(mask, numpy_rng(simulation_seed(item.id)), cfg.gaze)
    return Sample(id=item.id, split=item.split, image=image, mask=mask, fixations=fixations)


__all__ = ["FolderSource", "IsicSource", "LAYOUTS", "Sample", "Source", "SourceIndex", "SourceItem",
           "SyntheticSource", "get_source", "load_sample", "simulation_seed"]
