"""How well an early, cheap signal of a run ranks its final result: the check behind a staged search's rung.

A proxy is one validation curve (the predictor's ``val_dice``, or ``val_dice_student``, ``_teacher``,
``_ensemble``) read at step ``s`` of a run's own full-length schedule; the target is the run's final
``val_dice``. Over a set of runs (protocol records or the finished trials of sweeps), ``fidelity`` gives
Spearman's and Kendall's rank correlations, the regret of picking the proxy's best (final Dice of the
final-best run minus that of the proxy-best run), and top-k recall (the share of the final top k that the
proxy's top k holds), each with a percentile bootstrap interval over runs. Only validation values are read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

PROXIES = ("val_dice", "val_dice_student", "val_dice_teacher", "val_dice_ensemble")


class FidelityError(ValueError):
    """Too few runs, a step no run reached, or an unreadable record; the message names it."""


@dataclass(frozen=True)
class Run:
    """One finished run: its name, its validation curve by step, and its full length.

    Args:
        name: e.g. ``d_fgi-seed0`` or a trial id.
        curve: step -> {metric: value} of each evaluation.
        max_steps: the run's schedule length (its last evaluation is the final value).
    """

    name: str
    curve: Mapping[int, Mapping[str, float]]
    max_steps: int

    @property
    def final(self) -> float:
        """Final val Dice (of the run's predictor)."""
        return float(self.curve[self.max_steps]["val_dice"])


@dataclass(frozen=True)
class Interval:
    """A statistic and its 95 % percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


@dataclass(frozen=True)
class FidelityRow:
    """The fidelity of one proxy at one step, over ``runs`` runs (those that report the proxy there)."""

    proxy: str
    step: int
    runs: int
    spearman: Interval
    kendall: Interval
    regret: Interval  # in Dice points (x100)
    recall: Interval  # top-k recall, 0..1
    k: int


def _stats(proxy: np.ndarray, final: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """Spearman, Kendall, regret@1 (points) and top-k recall of one sample of runs."""
    if np.ptp(proxy) == 0 or np.ptp(final) == 0:
        rho = tau = math.nan  # no ranking to compare (a resample of one distinct run)
    else:
        rho, tau = float(stats.spearmanr(proxy, final).statistic), float(stats.kendalltau(proxy, final).statistic)
    regret = 100 * (final.max() - final[int(np.argmax(proxy))])
    kk = min(k, len(final))
    top_proxy, top_final = set(np.argsort(-proxy, kind="stable")[:kk]), set(np.argsort(-final, kind="stable")[:kk])
    return rho, tau, float(regret), len(top_proxy & top_final) / kk


def fidelity(runs: Sequence[Run], proxy: str, step: int, *, k: int = 3, samples: int = 2000,
             seed: int = 0) -> FidelityRow:
    """Fidelity of ``proxy`` at ``step`` for the final val Dice of ``runs``.

    Args:
        runs: finished runs; those without ``proxy`` at ``step`` are left out.
        proxy: one of ``PROXIES``.
        step: the rung, a step inside every run's schedule.
        k: size of the top sets of the recall.
        samples: bootstrap resamples of the runs.
        seed: the bootstrap's seed.

    Raises:
        FidelityError: an unknown proxy, or fewer than 3 runs report it at ``step``.
    """
    if proxy not in PROXIES:
        raise FidelityError(f"proxy {proxy!r} is unknown; valid proxies are {list(PROXIES)}")
    used = [r for r in runs if step in r.curve and proxy in r.curve[step]]
    if len(used) < 3:
        raise FidelityError(f"{proxy} at step {step}: {len(used)} of {len(runs)} runs report it; need at least 3")
    p = np.array([r.curve[step][proxy] for r in used], dtype=np.float64)
    f = np.array([r.final for r in used], dtype=np.float64)
    point = _stats(p, f, k)
    rng = np.random.default_rng(seed)
    boot = np.array([_stats(p[idx], f[idx], k) for idx in rng.integers(0, len(used), (samples, len(used)))])
    lows, highs = np.nanpercentile(boot, 2.5, axis=0), np.nanpercentile(boot, 97.5, axis=0)
    spearman, kendall, regret, recall = (Interval(point[i], float(lows[i]), float(highs[i])) for i in range(4))
    return FidelityRow(proxy, step, len(used), spearman, kendall, regret, recall, k)


def runs_from_records(folder: str | Path) -> list[Run]:
    """The runs of a folder of protocol records (``benchmarks/protocol_kvasir.py``: one JSON per run).

    Raises:
        FidelityError: naming the file, for a missing folder or a record without a curve that reaches its
            ``train.max_steps``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FidelityError(f"{folder}: no records folder")
    runs = []
    for path in sorted(folder.glob("*.json")):
        try:
            rec: dict[str, Any] = json.loads(path.read_text())
            max_steps = int(rec["config"]["train"]["max_steps"])
            curve = {int(row["step"]): {k: float(v) for k, v in row.items() if k in PROXIES} for row in rec["curve"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise FidelityError(f"{path}: not a protocol record ({exc})") from None
        if max_steps not in curve:
            raise FidelityError(f"{path}: its curve ends before step {max_steps}")
        runs.append(Run(path.stem, curve, max_steps))
    return runs


def runs_from_histories(curves: Mapping[str, Mapping[str, Mapping[int, float]]],
                        max_steps: Mapping[str, int]) -> tuple[list[Run], int]:
    """Runs from metric histories (``metric -> run name -> step -> value``, e.g. a sweep's MLflow trials) and
    each run's schedule length; runs whose ``val_dice`` does not reach it (stopped early) are left out and
    counted."""
    names = sorted(max_steps)
    runs, short = [], 0
    for name in names:
        curve: dict[int, dict[str, float]] = {}
        for metric, by_run in curves.items():
            for step, value in by_run.get(name, {}).items():
                curve.setdefault(int(step), {})[metric] = float(value)
        if "val_dice" not in curve.get(max_steps[name], {}):
            short += 1
            continue
        runs.append(Run(name, curve, max_steps[name]))
    return runs, short


def format_table(rows: Sequence[FidelityRow]) -> str:
    """A Markdown table of fidelity rows."""
    lines = ["| proxy | step | runs | Spearman | Kendall | regret@1 (Dice points) | top-k recall |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.proxy} | {r.step} | {r.runs} | {r.spearman} | {r.kendall} | {r.regret} | "
                     f"{r.recall.value:.2f} [{r.recall.low:.2f}, {r.recall.high:.2f}] (k={r.k}) |")
    return "\n".join(lines) + "\n"


__all__ = ["runs_from_histories", "PROXIES", "FidelityError", "FidelityRow", "Interval", "Run", "fidelity", "format_table", "runs_from_records"]
