"""Loss terms as ``nn.Module``s on tensors.

The segmentation and alignment terms are means of per-sample values, so a batch split across
data-parallel workers gives the same gradient as the whole batch on one worker. The reference
consistency term pools its selected pixels over the batch, as the reference does (see
``ConfidenceWeightedConsistency``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def sigmoid_rampup(step: int, length: int, shape: float) -> float:
    """Weight ``exp(-shape * (1 - step/length)**2)`` rising to 1 at ``length``; 1 when length is 0."""
    if length <= 0 or step >= length:
        return 1.0
    phase = 1.0 - max(step, 0) / length
    return float(math.exp(-shape * phase * phase))


def level_consistency(logits: torch.Tensor, propagated: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-level consistency of GazeMedSeg: each level's two-class probabilities agree with the other
    levels' (detached): the sum over levels i of -mean over pixels and other levels j of sum_c P_i,c * P_j,c.
    "pure" mode takes P_i from ``logits``; "prop" mode passes ``propagated`` and takes P_i from its level i
    (P_j stays the raw prediction of level j).

    Shape:
        logits, propagated (K, B, 1, H, W) for K >= 2 levels. Returns a scalar.
    """

    def two_class(x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(x.float())
        return torch.cat([1 - p, p], dim=2)  # (K, B, 2, H, W)

    probs = two_class(logits)
    own = probs if propagated is None else two_class(propagated)
    total = logits.new_zeros((), dtype=torch.float32)
    for i in range(probs.shape[0]):
        others = torch.cat([probs[:i], probs[i + 1:]]).detach()
        total = total - (own[i][None] * others).sum(2).mean()
    return total


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


CWC_FORMS = ("reference", "symmetric")


class ConfidenceWeightedConsistency(nn.Module):
    """Confidence-weighted consistency between a prediction and a detached pseudo-target.

    With the two-class probabilities P = (1 - p, p) of the target, its label y = argmax P (class 0 on a
    tie) and the prediction's probabilities Q:

    - "reference" (FGI ``crc_loss``): the positive term -max(P) * log Q_y on pixels where
      max(P) >= tau_pos; the negative term -min(P) * log(max(1 - Q_{1-y}, eps)) on pixels where
      min(P) < tau_neg. Each term is the mean over ITS OWN selected pixels of the whole batch (an empty
      selection gives 0), and the loss is their sum. Under data parallelism the selected-pixel counts are
      summed over workers, so N workers give the gradient of one worker on the whole batch.
    - "symmetric" (ablation): the positive term as above and, for each class c with P_c < tau_neg,
      -max(P) * log(1 - Q_c); both summed over pixels and divided by the pixel count, per sample, then
      averaged over the batch.

    Args:
        tau_pos: confidence threshold of the positive term.
        tau_neg: probability threshold of the negative term.
        form: "reference" or "symmetric".
        eps: floor of 1 - Q in the reference negative term (the reference clamps at 1e-6).

    Shape:
        logits (B, 1, H, W); target_prob (B, 1, H, W) in [0, 1]. Returns a scalar.
    """

    def __init__(self, tau_pos: float, tau_neg: float, form: str = "reference", eps: float = 1e-6) -> None:
        super().__init__()
        if form not in CWC_FORMS:
            raise ValueError(f"consistency form {form!r} is unknown; valid forms are {list(CWC_FORMS)}")
        self.tau_pos = tau_pos
        self.tau_neg = tau_neg
        self.form = form
        self.log_eps = math.log(eps)

    def forward(self, logits: torch.Tensor, target_prob: torch.Tensor) -> torch.Tensor:
        """Scalar loss."""
        logits = logits.float()
        p = target_prob.detach().float()
        if self.form == "symmetric":
            return self._symmetric(logits, p)
        conf = torch.maximum(p, 1 - p)
        low = 1 - conf
        # log Q_y of the target label; in the binary case 1 - Q_{1-y} is Q_y as well
        log_q_label = torch.where(p > 0.5, F.logsigmoid(logits), F.logsigmoid(-logits))
        positive = _selected_mean(-conf * log_q_label, conf >= self.tau_pos)
        negative = _selected_mean(-low * log_q_label.clamp_min(self.log_eps), low < self.tau_neg)
        return positive + negative

    def _symmetric(self, logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
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


def _selected_mean(values: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the ``selected`` entries; 0 (with a zero gradient) when none is.

    Under data parallelism the count is summed over all workers and the local sum scaled by the world
    size, so the averaged gradient equals that of the mean over the whole global batch (as on one worker).
    """
    picked = torch.where(selected, values, torch.zeros_like(values))
    count = selected.sum().to(values.dtype)
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world > 1:
        dist.all_reduce(count)
    return picked.sum() * world / count.clamp_min(1)


class FeatureAlignment(nn.Module):
    """Mean over levels of 1 - cosine(teacher feature (detached), student adapter feature).

    Args:
        eps: floor of the cosine's norm product (the reference's 1e-6).

    Shape:
        teacher[level], student[level]: (B, C, h, w). Returns a scalar; 0 when no level is given.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, teacher: Mapping[int, torch.Tensor], student: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Scalar loss."""
        levels = sorted(student)
        if not levels:
            return torch.zeros(())
        terms = []
        for level in levels:
            t = teacher[level].detach().float()
            s = student[level].float()
            terms.append((1 - F.cosine_similarity(s, t, dim=1, eps=self.eps)).flatten(1).mean(1).mean())
        return torch.stack(terms).mean()
