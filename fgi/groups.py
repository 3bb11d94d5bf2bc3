"""Seed groups: the trials of one config that differ only in their seed, and the value they share.

A sweep with ``seeds_per_trial`` N runs every proposed config N times, with seeds ``s, s+1, ..., s+N-1``
(``s`` the sweep's ``train.seed``). The config's value is the mean of its seeds' values, and their spread
(sample standard deviation) is kept beside it. A group counts only when all N seeds were scored, so a
config is never ranked on the lucky half of its runs. The search (best config, what TPE is told) and the
tracking (best-so-far, the spread on each child run) both use these functions.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GROUP_TAG = "fgi.seed_group"  # MLflow tag of a trial's group id
SEED_TAG = "fgi.seed"  # MLflow tag of a trial's seed within its group
SEED_KEY = "train.seed"  # the config key a repeated or final-stage trial sets besides the searched ones


def group_id(values: Mapping[str, Any]) -> str:
    """A short stable id of a config's searched values (the seed left out by the caller)."""
    text = json.dumps({k: values[k] for k in sorted(values)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class GroupScore:
    """One config's value over its seeds.

    Args:
        group: the group id.
        members: (trial id, seed, value) of each seed's run, by seed.
        mean: the mean of the values.
        std: their sample standard deviation (0 for one seed).
    """

    group: str
    members: tuple[tuple[str, int, float], ...]
    mean: float
    std: float

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(seed for _, seed, _ in self.members)


def spread(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``.

    Raises:
        ValueError: no values.
    """
    v = [float(x) for x in values]
    if not v:
        raise ValueError("spread: no values")
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return mean, std


def group_scores(items: Iterable[tuple[str, str, int, float]], seeds: int) -> list[GroupScore]:
    """The groups whose ``seeds`` seeds all have a finite value, in order of first appearance.

    Args:
        items: (group id, trial id, seed, value) of every scored trial.
        seeds: runs per group (``seeds_per_trial``).
    """
    by_group: dict[str, dict[int, tuple[str, float]]] = {}
    for group, trial, seed, value in items:
        if math.isfinite(float(value)):
            by_group.setdefault(group, {})[int(seed)] = (trial, float(value))
    out = []
    for group, runs in by_group.items():
        if len(runs) < seeds:
            continue
        members = tuple((runs[s][0], s, runs[s][1]) for s in sorted(runs))
        mean, std = spread(v for _, _, v in members)
        out.append(GroupScore(group, members, mean, std))
    return out


def best_group(groups: Iterable[GroupScore], mode: str) -> GroupScore | None:
    """The group with the best mean (``mode`` "max" or "min"); None when there is none."""
    sign = 1.0 if mode == "max" else -1.0
    return max(groups, key=lambda g: sign * g.mean, default=None)


def group_table(groups: Iterable[GroupScore], metric: str) -> str:
    """A Markdown table of the groups: id, seeds, each seed's value, mean and spread."""
    lines = [f"| group | seeds | {metric} per seed | mean | std |", "|---|---|---|---|---|"]
    for g in groups:
        per_seed = ", ".join(f"{v:.4f}" for _, _, v in g.members)
        lines.append(f"| {g.group} | {' '.join(map(str, g.seeds))} | {per_seed} | {g.mean:.4f} | {g.std:.4f} |")
    return "\n".join(lines) + "\n"


__all__ = ["GROUP_TAG", "SEED_KEY", "SEED_TAG", "GroupScore", "best_group", "group_id", "group_scores", "group_table", "spread"]
