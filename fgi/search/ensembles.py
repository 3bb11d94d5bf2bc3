"""Scoring an ensemble of a sweep's trials against its members, on the val part of their shared split.

Every member and the ensemble answer on the image alone (as on a new image), through one function
(``fgi.run.evaluation.ensemble_rows``, each member predicting once), so the comparison is like for like; the gain of the ensemble over its
best member comes with a paired bootstrap interval over val images (``fgi.search.compare``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fgi.data.errors import DataError
from fgi.method.metrics import METRICS
from fgi.search.compare import paired_bootstrap


@dataclass(frozen=True)
class EnsembleScore:
    """Val scores of an ensemble and its members (``member_dice`` in member order; ``best`` indexes it)."""

    metrics: dict[str, float]
    member_dice: list[float]
    best: int
    gain: float
    ci_low: float
    ci_high: float
    images: int

    def tracked(self) -> dict[str, float]:
        """The metrics an ensemble run logs: its own val metrics, its best member's Dice, the gain and its CI."""
        return {**self.metrics, "val_dice_best_member": self.member_dice[self.best], "val_dice_gain": self.gain,
                "val_dice_gain_ci_low": self.ci_low, "val_dice_gain_ci_high": self.ci_high,
                "val_images": float(self.images)}

    @classmethod
    def from_record(cls, info: dict[str, Any]) -> EnsembleScore:
        """The score an ``ensemble.json`` records (``tracked()`` under "val", member Dice under "members")."""
        val = info["val"]
        dice = [float(m["metrics"]["val_dice"]) for m in info["members"]]
        return cls({k: v for k, v in val.items() if k.removeprefix("val_") in METRICS}, dice,
                   max(range(len(dice)), key=lambda i: dice[i]), val["val_dice_gain"], val["val_dice_gain_ci_low"],
                   val["val_dice_gain_ci_high"], int(val["val_images"]))


def score_ensemble(ensemble: Any) -> EnsembleScore:
    """Score an ``fgi.ensemble.Ensemble`` and each of its members on the val part of the members' split.

    The data is prepared first when its cache is missing (``ensure_prepared``).

    Raises:
        DataError: the split has no val part.
    """
    from torch.utils.data import DataLoader

    from fgi.data.dataset import build_datasets, ensure_prepared
    from fgi.run.evaluation import ensemble_rows, row_means

    cfg = ensemble.cfg
    ensure_prepared(cfg)
    val = build_datasets(cfg, cfg.train.seed).get("val")
    if val is None or len(val) == 0:
        raise DataError(f"dataset {cfg.data.dataset}: the members' split has no val part to score on")
    loader = DataLoader(val, batch_size=cfg.train.batch_size, num_workers=0)
    member_rows, rows = ensemble_rows(ensemble, loader)
    member_dice = [sum(r["dice"] for r in mr) / len(mr) for mr in member_rows]
    best = max(range(len(member_dice)), key=lambda i: member_dice[i])
    gain, low, high = paired_bootstrap({r["id"]: r["dice"] for r in rows},
                                       {r["id"]: r["dice"] for r in member_rows[best]}, seed=cfg.train.seed)
    return EnsembleScore(row_means(rows), member_dice, best, gain, low, high, len(rows))


__all__ = ["EnsembleScore", "score_ensemble"]
