"""The dataset registry: every dataset name ``data.dataset`` may take, and what the name means.

One entry per dataset gives its raw layout (which adapter in ``fgi.data.sources`` reads it), where its
images and masks lie as files (what ``fgi evaluate --root`` scores), its image channels, and what its images
show (the context the prompt templates render). Adding a dataset means
adding one entry here (and, for a new layout, one adapter). An unknown name is an error listing the
valid ones. It imports only the template registry and the config's error type, so ``fgi.config`` checks
``data.dataset`` and ``text.template`` when a config is built, and text code may read dataset contexts
without importing the data package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgi.config import NAME_CHECKS
from fgi.fields import ConfigError
from fgi.text.templates import CONTEXT_KEYS, TemplateError, get_template


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset.

    Args:
        name: registry name (``data.dataset``).
        layout: the adapter of ``fgi.data.sources.LAYOUTS`` that reads its raw folder.
        files: where its images and masks lie as files, one of ``FILE_LAYOUTS``: "folder" (``images/<id>``,
            ``masks/<id>``; for the synthetic dataset, the folder ``fgi synth`` writes) or "isic" (the ISIC 2018
            Task 1 part folders). Empty: the dataset has no files to score.
        channels: image channels (1 for MRI slices, 3 for RGB).
        lesion: what the segmented region is called, for the prompt templates.
        modality: the imaging modality, for the prompt templates.
        organ: the imaged organ, for the prompt templates.
        image_exts: image file extensions of its files.
        case_separator: ids of a ``folder`` layout are ``<case><separator><slice>``; the slices of one
            case stay in one split when validation is carved. Empty: every image is its own case.
        fixation_file: the name GazeMedSeg gives the dataset's fixation CSV, looked for beside the data
            folder when no CSV is named. Empty: the dataset needs no CSV.
    """

    name: str
    layout: str
    files: str
    channels: int
    lesion: str
    modality: str
    organ: str
    image_exts: tuple[str, ...] = ()
    case_separator: str = ""
    fixation_file: str = ""

    @property
    def context(self) -> dict[str, str]:
        """Lesion, modality and organ: the dataset words a prompt template may use."""
        return {k: getattr(self, k) for k in CONTEXT_KEYS}

    def group_of(self, item_id: str) -> str:
        """The case an image id belongs to ("" when every image is its own case)."""
        return item_id.rsplit(self.case_separator, 1)[0] if self.case_separator else ""


FILE_LAYOUTS = ("folder", "isic")  # how a dataset's images and masks may lie as files

_ENTRIES = (
    DatasetInfo("synthetic", "synthetic", "folder", 3, lesion="lesion", modality="synthetic image", organ="tissue",
                image_exts=(".png",)),
    DatasetInfo("kvasir", "folder", "folder", 3, lesion="polyp", modality="colonoscopy", organ="colon",
                image_exts=(".jpg", ".jpeg", ".png"), fixation_file="kvasir_fixation.csv"),
    DatasetInfo("isic", "isic", "isic", 3, lesion="skin lesion", modality="dermoscopy", organ="skin",
                image_exts=(".jpg", ".jpeg", ".png")),
    DatasetInfo("nci-isbi", "folder", "folder", 1, lesion="prostate", modality="T2-weighted MRI", organ="pelvis",
                image_exts=(".dcm", ".png"), case_separator="_", fixation_file="nci-isbi_fixation.csv"),
)
DATASETS: dict[str, DatasetInfo] = {d.name: d for d in _ENTRIES}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
FILE_DATASETS: tuple[str, ...] = tuple(d.name for d in _ENTRIES if d.files)  # datasets a raw folder can hold
FIXATION_FOLDER = "gazemedseg"  # the folder GazeMedSeg's release unpacks to, looked in beside the data folder


def find_fixations(name: str, root: str | Path) -> Path | None:
    """The dataset's fixation CSV found by its GazeMedSeg name in ``root``, beside it, or in a ``gazemedseg``
    folder beside it; None when the dataset needs none or no such file exists."""
    info, base = get_dataset(name), Path(root).expanduser().resolve()
    if not info.fixation_file:
        return None
    for folder in (base, base.parent, base.parent / FIXATION_FOLDER):
        if (folder / info.fixation_file).is_file():
            return folder / info.fixation_file
    return None


def get_dataset(name: str) -> DatasetInfo:
    """The registry entry of ``name``.

    Raises:
        ConfigError: an unknown name; the message lists the valid ones.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets are {sorted(DATASETS)}")
    return DATASETS[name]


def dataset_context(name: str) -> dict[str, str]:
    """Lesion, modality and organ of dataset ``name`` (``DatasetInfo.context``)."""
    return get_dataset(name).context


def validate_names(dataset: str, template: str) -> None:
    """Check ``data.dataset`` and ``text.template`` against their registries, so a typo fails when a config
    loads rather than inside a trial.

    Args:
        dataset: the value of ``data.dataset``.
        template: the value of ``text.template``.

    Raises:
        ConfigError: an unknown dataset (the message starts with ``data.dataset:``) or template (``text.template:``),
            listing the valid names.
    """
    try:
        get_dataset(dataset)
    except ConfigError as exc:
        raise ConfigError(f"data.dataset: {exc}") from None
    try:
        get_template(template)
    except TemplateError as exc:
        raise ConfigError(f"text.template: {exc}") from None


NAME_CHECKS.append(validate_names)

__all__ = ["DATASETS", "DATASET_NAMES", "FILE_DATASETS", "FILE_LAYOUTS", "FIXATION_FOLDER", "DatasetInfo", "dataset_context",
           "find_fixations", "get_dataset", "validate_names"]
