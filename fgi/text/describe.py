"""Lesion describers: the interface every describer offers and the registry of them (``text.describer``).

``morphology`` (the offline default, ``fgi.text.morphology``) measures the lesion region and renders
the attributes through a prompt template. ``vlm`` (``fgi.text.vlm``) asks a local vision-language model
the template's ``vlm_prompt``. The region is the gaze pseudo-mask of a training image, or a predicted
mask at inference; a describer is never handed a ground-truth mask (``TextItem`` has no field for one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from fgi.config import TextConfig
from fgi.text.items import DescriberError, TextItem
from fgi.text.morphology import MORPHOLOGY_MODEL_ID, MorphologyDescriber
from fgi.text.templates import Template
from fgi.text.vlm import VLMDescriber, vlm_model_id


class Describer(Protocol):
    """What every describer offers."""

    name: str
    model_id: str

    def describe(self, pairs: Sequence[tuple[TextItem, Template]], context: Mapping[str, str]) -> list[str]:
        """One description per (item, template) pair, in order.

        Args:
            pairs: the items with the template each is described with.
            context: the dataset words (lesion, modality, organ) the templates use.
        """
        ...


@dataclass(frozen=True)
class DescriberSpec:
    """One registered describer.

    Args:
        build: makes the describer from the text config, on a device.
        model_id: its cache identity from the text config, without loading any model.
    """

    build: Callable[[TextConfig, torch.device | None], Describer]
    model_id: Callable[[TextConfig], str]


DESCRIBERS: dict[str, DescriberSpec] = {
    "morphology": DescriberSpec(build=lambda text_cfg, device: MorphologyDescriber(),
                                model_id=lambda text_cfg: MORPHOLOGY_MODEL_ID),
    "vlm": DescriberSpec(build=VLMDescriber, model_id=vlm_model_id),
}


def _spec(name: str) -> DescriberSpec:
    if name not in DESCRIBERS:
        raise DescriberError(f"unknown text.describer {name!r}; valid describers are {sorted(DESCRIBERS)}")
    return DESCRIBERS[name]


def describer_model_id(text_cfg: TextConfig) -> str:
    """Cache identity of the configured describer, without loading any model.

    Raises:
        DescriberError: an unknown describer, or describer 'vlm' without a usable ``text.vlm_path``.
    """
    return _spec(text_cfg.describer).model_id(text_cfg)


def make_describer(text_cfg: TextConfig, device: torch.device | None = None) -> Describer:
    """Build the describer named by ``text.describer``; an unknown name lists the valid ones.

    Args:
        text_cfg: the text config.
        device: where a model-backed describer runs.
    """
    return _spec(text_cfg.describer).build(text_cfg, device)


__all__ = ["DESCRIBERS", "Describer", "DescriberSpec", "describer_model_id", "make_describer"]
