"""Loss terms as ``nn.Module``s on tensors. Every term is a mean of per-sample values, so a batch
split across data-parallel workers gives the same gradient as the whole batch on one worker."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


def sigmoid_rampup(step: int, length: int, shape: float) -> float:
    """Weight ``exp(-shape * (1 - step/length)**2)`` rising to 1 at ``length``; 1 when length is 0."""
    if length <= 0 or step >= length:
        return 1.0
    phase = 1.0 - max(step, 0) / length
    return float(math.exp(-shape * phase * phase))


class SegmentationLoss(nn.Module):
    """BCE, soft Dice, or their weighted sum, averaged per sample.

    Args:
        kind: "bce", "dice" or "bce+dice".
        bce_weight: weight of the BCE term.
        dice_weight: weight of the Dice term.
        smooth: additive smoothing of the Dice ratio (keeps empty targets finite).

    Shape:
        logits (B, 1, H, W) float; target (B, 1, H, W) bool. Returns a scalar.
    """

    def __init__(self, kind: str, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0) -> None:
        super().__init__()
        if kind not in ("bce", "dice", "bce+dice"):
            raise ValueError(f"segmentation loss {kind!r} is unknown; valid kinds are ['bce', 'dice', 'bce+dice']")
        self.use_bce = "bce" in kind
        self.use_dice = "dice" in kind
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss."""
        logits = logits.float()
        t = target.float()
        loss = logits.new_zeros(())
        if self.use_bce:
            bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(1).mean(1)
            loss = loss + self.bce_weight * bce.mean()
        if self.use_dice:
            p = torch.sigmoid(logits).flatten(1)
            t = t.flatten(1)
            dice = (2 * (p * t).sum(1) + self.smooth) / (p.sum(1) + t.sum(1) + self.smooth)
            loss = loss + self.dice_weight * (1 - dice).mean()
        return loss


class ConfidenceWeightedConsistency(nn.Module):
    """Confidence-weighted consistency between a prediction and a detached pseudo-target.

    With the two-class probabilities P = (1 - p, p) of the target and Q of the prediction:
    positive term on pixels where max(P) >= tau_pos: -max(P) * log Q[argmax P];
    negative term for each class c with P_c < tau_neg: -max(P) * log(1 - Q_c).
    Both are summed over pixels and divided by the pixel count, per sample; an empty selection gives 0.

    Args:
        tau_pos: confidence threshold of the positive term.
        tau_neg: probability threshold of the negative term.

    Shape:
        logits (B, 1, H, W); target_prob (B, 1, H, W) in [0, 1]. Returns a scalar.
    """

    def __init__(self, tau_pos: float, tau_neg: float) -> None:
        super().__init__()
        self.tau_pos = tau_pos
        self.tau_neg = tau_neg

    def forward(self, logits: torch.Tensor, target_prob: torch.Tensor) -> torch.Tensor:
        """Scalar loss."""
        logits = logits.float()
        p = target_prob.detach().float()
        target = torch.cat([1 - p, p], dim=1)
        log_q = torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
        conf, top = target.max(dim=1)
        positive = torch.where(conf >= self.tau_pos, -conf * log_q.gather(1, top[:, None]).squeeze(1),
                               torch.zeros_like(conf))
        # binary case: 1 - Q_c is the other class's probability, so log(1 - Q_c) = log Q_{1-c} exactly
        log_one_minus_q = log_q.flip(1)
        negative = torch.where(target < self.tau_neg, -conf[:, None] * log_one_minus_q, torch.zeros_like(target))
        per_sample = positive.flatten(1).mean(1) + negative.sum(1).flatten(1).mean(1)
        return per_sample.mean()


class FeatureAlignment(nn.Module):
    """Mean over levels of 1 - cosine(teacher feature (detached), student adapter feature).

    Shape:
        teacher[level], student[level]: (B, C, h, w). Returns a scalar; 0 when no level is given.
    """

    def forward(self, teacher: Mapping[int, torch.Tensor], student: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Scalar loss."""
        levels = sorted(student)
        if not levels:
            return torch.zeros(())
        terms = []
        for level in levels:
            t = teacher[level].detach().float()
            s = student[level].float()
            terms.append((1 - F.cosine_similarity(s, t, dim=1)).flatten(1).mean(1).mean())
        return torch.stack(terms).mean()
