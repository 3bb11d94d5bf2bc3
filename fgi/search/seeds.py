"""Repeated seeds per config: a searcher wrapper that runs each proposed config once per seed.

Ray Tune's ``Repeater`` repeats each suggestion and tells the searcher the ``nanmean`` of the repeats, so a
config whose seeds mostly failed or were stopped is told the value of the one that finished, and its state is
not saved with the searcher (a resumed sweep loses which trial belongs to which config). ``SeedGroups`` keeps
Repeater's grouping and changes what it tells and saves:

- each trial of a group gets ``train.seed`` = the sweep's seed + its index in the group (seeds s, s+1, ...);
- the inner searcher is told the mean over the group only when every seed ran the stage's length with a
  finite value; otherwise the group is told as stopped early (pruned by ``FinishedOnlySearch``), or as
  failed when every seed failed;
- the group bookkeeping is saved in the searcher's checkpoint with the inner searcher's, so ``--resume``
  tells each group once, with all its seeds.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import Repeater
from ray.tune.search.repeater import TRIAL_INDEX

from fgi.groups import SEED_KEY, GroupScore, group_id, group_scores, group_table, spread
from fgi.search.finished import STEP_KEY


class SeedGroups(Repeater):
    """Run every suggestion of ``searcher`` with ``seeds`` seeds; tell it their mean once all have ended.

    Args:
        searcher: the inner searcher (an ``OptunaSearch``); it sees one trial per group.
        seeds: runs per config.
        first_seed: the seed of each group's first run.
        length: the stage's length in steps; a seed that stopped before it makes the group's value unusable.
    """

    def __init__(self, searcher: Any, seeds: int, first_seed: int, length: int) -> None:
        super().__init__(searcher, repeat=seeds, set_index=True)
        self.first_seed, self.length = int(first_seed), int(length)
        self._ended: dict[str, tuple[float, int, bool]] = {}  # trial id -> (value, step, failed)

    def suggest(self, trial_id: str) -> dict | None:
        """Repeater's suggestion, with the run's seed in place of its index."""
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config
        config[SEED_KEY] = self.first_seed + int(config.pop(TRIAL_INDEX))
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record this seed's end; when the group's last seed ends, tell the inner searcher once."""
        group = self._trial_id_to_group.get(trial_id)
        if group is None or trial_id in self._ended:
            return
        value = float((result or {}).get(self.metric, math.nan))
        self._ended[trial_id] = (value, int((result or {}).get(STEP_KEY, 0)), bool(error or result is None))
        ends = [self._ended.get(t) for t in group._trials]
        if len(ends) < self.repeat or any(e is None for e in ends):
            return
        if all(failed for _, _, failed in ends):
            self.searcher.on_trial_complete(group.primary_trial_id, result=None, error=True)
            return
        ran = [(v, step) for v, step, failed in ends if not failed]
        whole = len(ran) == self.repeat and all(math.isfinite(v) and step >= self.length for v, step in ran)
        if whole:
            mean, _ = spread(v for v, _ in ran)
            told = {self.metric: mean, STEP_KEY: min(step for _, step in ran)}
        else:  # some seed failed, stopped early or scored nothing: the group's mean would be a part's
            told = {STEP_KEY: -1}
        self.searcher.on_trial_complete(group.primary_trial_id, result=told, error=False)

    def save(self, checkpoint_path: str) -> None:
        """One file: the inner searcher's saved bytes and the group bookkeeping."""
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "inner.pkl")
            self.searcher.save(inner)
            with open(inner, "rb") as fh:
                inner_bytes = fh.read()
        state = {k: v for k, v in self.__dict__.items() if k != "searcher"}
        with open(checkpoint_path, "wb") as fh:
            pickle.dump({"inner": inner_bytes, "groups": state}, fh)

    def restore(self, checkpoint_path: str) -> None:
        """Read what ``save`` wrote."""
        with open(checkpoint_path, "rb") as fh:
            saved = pickle.load(fh)
        self.__dict__.update(saved["groups"])
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "inner.pkl")
            with open(inner, "wb") as fh:
                fh.write(saved["inner"])
            self.searcher.restore(inner)


def grouped_rows(scored: Sequence[tuple[Any, Mapping[str, Any]]], keys: Sequence[str], seeds: int, metric: str,
                 ) -> tuple[list[tuple[Any, dict[str, Any]]], list[GroupScore]]:
    """The whole seed groups of a sweep's scored trials, one row each, and the groups themselves.

    Args:
        scored: (Tune result, its competing report) of every trial that competes for best.
        keys: the searched keys (a group is one set of their values).
        seeds: runs per config.
        metric: the optimized metric.

    Returns:
        (result of the group's first seed, its report with ``metric`` replaced by the group's mean and
        ``<metric>_seed_std``, ``seeds`` and ``trial_id`` added) per whole group, and the groups.
    """
    by_trial = {}
    items = []
    for result, row in scored:
        trial = Path(result.path).name.removeprefix("trial_")
        group = group_id({k: result.config[k] for k in keys if k in result.config})
        by_trial[trial] = (result, row)
        items.append((group, trial, int(result.config.get(SEED_KEY, 0)), float(row[metric])))
    groups = group_scores(items, seeds)
    rows = []
    for g in groups:
        result, row = by_trial[g.members[0][0]]
        rows.append((result, {**row, metric: g.mean, f"{metric}_seed_std": g.std, "seeds": float(len(g.members)),
                              "trial_id": g.members[0][0]}))
    return rows, groups


def group_header(groups: Sequence[GroupScore], best: GroupScore, metric: str) -> str:
    """The best config header's lines on seed groups (``fgi.search.sweep.best_config_header``'s ``final``)."""
    values = ", ".join(f"{v:.4f}" for _, _, v in best.members)
    return (f"seed groups: every config ran with {len(best.members)} seeds; {len(groups)} whole group(s) ranked by "
            f"their mean {metric}\nbest group {best.group}, seeds {' '.join(map(str, best.seeds))}: {values}; "
            f"mean {best.mean:.4f}, std {best.std:.4f}\n")


__all__ = ["SeedGroups", "group_header", "group_table", "grouped_rows"]
