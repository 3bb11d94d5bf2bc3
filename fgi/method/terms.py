"""The loss terms of each training method, by name: the engine computes each term from the step's
outputs, weights it and sums the weighted terms into the loss it minimizes.

Every term is logged as ``loss_<name>`` (unweighted). A new term is one entry in its method's table: a
function of the engine's loss modules (``TeacherStudentTrainer.build_losses``) and the step's outputs,
and a weight read from ``loss`` config fields and the consistency ramp (a new weight is a new field of
``fgi.config.LossConfig``, so the search can reach it).

Outputs of a teacher-student step: ``t_clean``, ``t_mixed``, ``s_masked``, ``s_mixed`` (float logits),
``tight``, ``masked_target`` (bool), ``teacher_prob``, ``student_target`` (probabilities), the two CutMix
``box_t``/``perm_t``, ``box_s``/``perm_s``, and ``t_feats``/``s_feats`` (aligned features by level). Of a
two-level step: ``levels`` (2, B, 1, H, W), ``propagated`` (or None), ``tight``, ``loose``. Of a
student-only step: ``logits``, ``masked_target``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fgi.config import LossConfig
from fgi.method.losses import level_consistency
from fgi.method.mixing import apply_mix

Modules = Mapping[str, nn.Module]
Outputs = Mapping[str, Any]


def _one(lc: LossConfig, ramp: float) -> float:
    return 1.0


@dataclass(frozen=True)
class LossTerm:
    """One named term.

    Args:
        value: the unweighted term from the engine's loss modules and the step's outputs (a scalar tensor).
        weight: its weight from the loss config and the ramp-up weight of this step.
    """

    value: Callable[[Modules, Outputs], torch.Tensor]
    weight: Callable[[LossConfig, float], float] = _one


def _cwc(m: Modules, o: Outputs) -> torch.Tensor:
    """Each model's mixed prediction against the other's prediction mixed by the same boxes."""
    return (m["cwc"](o["t_mixed"], apply_mix(o["student_target"], o["box_t"], o["perm_t"]))
            + m["cwc"](o["s_mixed"], apply_mix(o["teacher_prob"], o["box_s"], o["perm_s"])))


LOSS_TERMS: dict[str, dict[str, LossTerm]] = {
    "teacher_student": {
        "teacher_seg": LossTerm(lambda m, o: m["seg_teacher"](o["t_clean"], o["tight"])),
        "student_seg": LossTerm(lambda m, o: m["seg_student"](o["s_masked"], o["masked_target"])),
        "cwc": LossTerm(_cwc, lambda lc, ramp: lc.cwc_weight * ramp),
        "align": LossTerm(lambda m, o: m["align"](o["t_feats"], o["s_feats"]).to(o["t_clean"].device),
                          lambda lc, ramp: lc.align_weight * ramp),
    },
    "student_only": {
        "student_seg": LossTerm(lambda m, o: m["seg_student"](o["logits"], o["masked_target"])),
    },
    "two_level": {
        "tight_seg": LossTerm(lambda m, o: m["seg_student"](o["levels"][0], o["tight"])),
        "loose_seg": LossTerm(lambda m, o: m["seg_student"](o["levels"][1], o["loose"])),
        "level": LossTerm(lambda m, o: level_consistency(o["levels"], o["propagated"]), lambda lc, ramp: lc.level_weight),
    },
}


def sum_terms(terms: Mapping[str, LossTerm], modules: Modules, outputs: Outputs, lc: LossConfig,
              ramp: float = 1.0) -> dict[str, torch.Tensor]:
    """Every term as ``loss_<name>`` and their weighted sum as ``loss``, summed in the table's order."""
    values = {name: term.value(modules, outputs) for name, term in terms.items()}
    total = None
    for name, term in terms.items():
        weight = term.weight(lc, ramp)
        part = values[name] if term.weight is _one else weight * values[name]
        total = part if total is None else total + part
    return {"loss": total, **{f"loss_{name}": v for name, v in values.items()}}


__all__ = ["LOSS_TERMS", "LossTerm", "sum_terms"]
