"""Model folders that predict with the mean of several trained models: the ensemble format, one writer, one reader.

An ensemble folder holds::

    ensemble.json        the members (sub-folder, where each came from, its own val scores), the rule that
                         combines them ("mean" of foreground probabilities) and the ensemble's own val scores
    normalization.json   the image normalization that every member shares
    member-1/ ...        one checkpoint folder per member (``fgi.checkpoint``; inference-only states)

``load_model_folder`` reads a checkpoint folder and an ensemble folder alike, so ``fgi predict``, ``fgi
evaluate`` and the MLflow model wrapper take either. Every member answers on the image alone (as on a new
image), so each must be deployable without text: ``model.predictor: student``, or an image-only teacher
(``text.mode: none``). Like ``fgi.checkpoint``, this module imports no training code: the caller hands it the
trainer class.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from fgi.checkpoint import NORMALIZATION_FILE, load_folder, read_normalization, replace_dir, write_checkpoint
from fgi.files import current_umask

ENSEMBLE_FILE = "ensemble.json"  # marks an ensemble folder
MEMBER_PREFIX = "member-"  # member sub-folders: member-1, member-2, ...
COMBINE = "mean"  # how members' probabilities combine (the only rule)
# data keys that decide which images form the val part and at what size: members must agree on them, or the
# ensemble's val score would include images some member trained on
SPLIT_KEYS = ("dataset", "root", "split_dir", "val_fraction", "split_seed", "synthetic_train", "synthetic_val",
              "synthetic_test", "synthetic_seed", "image_size", "in_channels")

T = TypeVar("T")


def deployable(cfg: Any) -> str | None:
    """None when a config's predictor answers on the image alone; otherwise why it does not."""
    if cfg.model.predictor != "student" and cfg.text.mode != "none":
        return (f"model.predictor {cfg.model.predictor!r} needs its teacher's text (text.mode {cfg.text.mode!r}), "
                "which a new image does not have")
    return None


class Ensemble:
    """The mean of its members' foreground probabilities, each from the member's own ``model.predictor``.

    ``cfg`` is the first member's config: it names the dataset, cache and split the ensemble is scored on.

    Raises:
        ValueError: no members, a member that is not deployable on images alone, members whose image
            normalization differs (they would need different inputs), or members whose configs split the
            data differently (``SPLIT_KEYS``).
    """

    def __init__(self, members: Sequence[Any], normalizations: Sequence[Mapping[str, Any]],
                 names: Sequence[str]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for member, norm, name in zip(members, normalizations, names, strict=True):
            why = deployable(member.cfg)
            if why:
                raise ValueError(f"{name}: cannot join an ensemble: {why}")
            if dict(norm) != dict(normalizations[0]):
                raise ValueError(f"{name}: image normalization {dict(norm)} differs from {names[0]}'s "
                                 f"{dict(normalizations[0])}; ensemble members take the same input")
            for key in SPLIT_KEYS:
                mine, first = getattr(member.cfg.data, key), getattr(members[0].cfg.data, key)
                if mine != first:
                    raise ValueError(f"{name}: data.{key} is {mine!r} but {names[0]}'s is {first!r}; ensemble "
                                     "members must be trained on the same split")
        self.members = list(members)
        self.names = list(names)
        self.normalization = dict(normalizations[0])
        self.cfg = members[0].cfg
        self.info: dict[str, Any] = {}  # what its ensemble.json records, once read from a folder

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Mean foreground probability of the members.

        Shape:
            image (B, C, H, W). Returns (B, 1, H, W) float32.
        """
        return self.combine([m.predict(image).float() for m in self.members])

    @staticmethod
    def combine(probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ensemble's answer from its members' probabilities (``COMBINE``: their mean)."""
        return torch.stack(list(probabilities)).mean(0)


def is_ensemble(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an ensemble folder (it holds ``ensemble.json``)."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def read_ensemble_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``ensemble.json`` of an ensemble folder, checked for its member list.

    Raises:
        ValueError: naming the file, when it is not JSON or lists no member folders.
    """
    file = Path(folder) / ENSEMBLE_FILE
    try:
        info = json.loads(file.read_text())
    except ValueError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from None
    members = info.get("members") if isinstance(info, dict) else None
    if not members or not all(isinstance(m, dict) and isinstance(m.get("folder"), str) for m in members):
        raise ValueError(f"{file}: expected {{\"members\": [{{\"folder\": ...}}, ...]}}")
    for m in members:
        if Path(m["folder"]).name != m["folder"] or m["folder"].startswith("."):
            raise ValueError(f"{file}: member folder {m['folder']!r} must be a plain sub-folder name")
    return info


def load_model_folder(folder: str | os.PathLike, trainer_class: type[T],
                      device: torch.device | str = "cpu") -> tuple[T | Ensemble, dict[str, Any]]:
    """A predictor and its image normalization from a checkpoint folder or an ensemble folder.

    Args:
        folder: a checkpoint folder (or its ``trainer.pt``) or an ensemble folder.
        trainer_class: the engine class each checkpoint is rebuilt as.
        device: where the models live.
    """
    p = Path(folder)
    if not (p.is_dir() and is_ensemble(p)):
        return load_folder(p, trainer_class, device)
    info = read_ensemble_info(p)
    loaded = [load_folder(p / m["folder"], trainer_class, device) for m in info["members"]]
    names = [str(p / m["folder"]) for m in info["members"]]
    ensemble = Ensemble([t for t, _ in loaded], [n for _, n in loaded], names)
    if ensemble.normalization != read_normalization(p):
        raise ValueError(f"{p / NORMALIZATION_FILE}: differs from its members' normalization")
    ensemble.info = info
    return ensemble, ensemble.normalization


def write_ensemble(folder: str | os.PathLike, ensemble: Ensemble, info: Mapping[str, Any],
                   member_info: Sequence[Mapping[str, Any]], precision: str = "fp32") -> Path:
    """Write an ensemble folder atomically: built under a temporary name beside it, then renamed into place.

    Args:
        folder: destination; an existing folder of that name is replaced as a whole.
        ensemble: the members to save (each as an inference-only checkpoint at ``precision``).
        info: what ``ensemble.json`` records besides the members (its val scores, where it came from).
        member_info: one mapping per member (source run, own val scores), in member order.
        precision: a key of ``fgi.checkpoint.PRECISIONS``: how the members' weights are stored.

    Returns:
        The folder.
    """
    dest = Path(folder)
    if len(member_info) != len(ensemble.members):
        raise ValueError(f"{len(member_info)} member descriptions for {len(ensemble.members)} members")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        members = []
        for i, (member, extra) in enumerate(zip(ensemble.members, member_info, strict=True), start=1):
            name = f"{MEMBER_PREFIX}{i}"
            write_checkpoint(tmp / name, member, dict(extra.get("metrics", {})), ensemble.normalization,
                             release=precision)
            members.append({"folder": name, **extra})
        body = {"combine": COMBINE, "precision": precision, **info, "members": members}
        (tmp / NORMALIZATION_FILE).write_text(json.dumps(ensemble.normalization))
        (tmp / ENSEMBLE_FILE).write_text(json.dumps(body, indent=1))
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


__all__ = ["COMBINE", "ENSEMBLE_FILE", "MEMBER_PREFIX", "SPLIT_KEYS", "Ensemble", "deployable", "is_ensemble",
           "load_model_folder", "read_ensemble_info", "write_ensemble"]
