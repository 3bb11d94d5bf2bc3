"""The final stage of a staged search: the screening stage's top k and the published point, re-run at the full
budget with several seeds, and an exported winner only when it beats the published point by more than the
seed noise.

``tune.py --final-stage SOURCE ... --rank-step S --top-k K --stage-seeds A B`` reads the screening runs of the
sources (the same kinds as a warm start: protocol records, sweep folders, ``mlflow:<experiment>``), keeps those
of the sweep's method (``fgi.search.warm.run_point``), groups them by their searched values and ranks the
groups by their mean metric at step S. The best K groups other than the published point are the candidates.
Each candidate and the published point runs once per stage seed to the end of the schedule; an earlier
full-length run of the same values and seed that kept its per-image val Dice (a protocol record's
``val_rows``) counts as that run and is not re-run.

The choice uses validation only: each run's per-image val Dice at its last step (``val_rows.json`` in its
final checkpoint). The candidate with the best mean over its seeds is the winner; it is exported when the 95 %
interval of its difference to the published point, resampling each config's seeds and then the val images
(``fgi.search.compare.seed_image_bootstrap``), lies above 0. Otherwise the published point is exported, and
the best config's header says why.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fgi.config import ConfigError, flatten, load_yaml_text
from fgi.groups import SEED_KEY
from fgi.search.compare import mean_over_seeds, paired_bootstrap, seed_image_bootstrap
from fgi.search.params import canonical, plain
from fgi.search.settings import SweepRecord
from fgi.search.space import SearchSpace
from fgi.search.warm import WarmPoint, read_source, run_point

PUBLISHED = "published"


@dataclass(frozen=True)
class FinalRun:
    """One run of the final stage: a config (``candidate`` names it) at one seed.

    Args:
        candidate: ``published`` or ``top<i>`` (the i-th best screening config).
        values: the searched values (plain).
        seed: ``train.seed`` of the run.
        reused: the earlier full-length run it takes the place of ("": a trial of this sweep runs it).
        val_rows: that run's per-image val Dice (empty for a trial).
    """

    candidate: str
    values: dict[str, Any]
    seed: int
    reused: str = ""
    val_rows: dict[str, float] = field(default_factory=dict)

    def point(self) -> dict[str, Any]:
        """The trial config's searched keys and seed (the fixed point the trial runs)."""
        return {**self.values, SEED_KEY: self.seed}

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "values": self.values, "seed": self.seed, "reused": self.reused,
                "val_rows": self.val_rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinalRun:
        return cls(str(data["candidate"]), dict(data["values"]), int(data["seed"]), str(data.get("reused", "")),
                   {str(k): float(v) for k, v in data.get("val_rows", {}).items()})


@dataclass(frozen=True)
class FinalPlan:
    """The final stage's candidates (``name``, ``values``, ``screen``: mean metric at the rank step, ``runs``:
    screening runs behind it) and its runs."""

    candidates: tuple[dict[str, Any], ...]
    runs: tuple[FinalRun, ...]

    def summary(self) -> str:
        """One line per candidate: its screening value and which of its runs are reused."""
        lines = []
        for c in self.candidates:
            screen = "not screened" if c["screen"] is None else f"{c['screen']:.4f} over {c['runs']} screening run(s)"
            reused = [r.reused for r in self.runs if r.candidate == c["name"] and r.reused]
            lines.append(f"final stage: {c['name']} ({screen})" + (f"; reuses {', '.join(reused)}" if reused else ""))
        return "\n".join(lines)


def _key(values: Mapping[str, Any]) -> str:
    return json.dumps({k: plain(canonical(v)) for k, v in sorted(values.items())}, sort_keys=True)


def plan_final_stage(sources: Sequence[str], space: SearchSpace, metric: str, mode: str, rank_step: int,
                     top_k: int, seeds: Sequence[int], mlflow_uri: str) -> FinalPlan:
    """The candidates and runs of a final stage over ``space`` (its ``base`` is the published point).

    Args:
        sources: where the screening runs are (``fgi.search.warm.read_source``).
        space: the sweep's space.
        metric: the screening metric (a curve key).
        mode: "max" or "min".
        rank_step: the step the screening runs are ranked at (the screening stage's stop step).
        top_k: candidates besides the published point.
        seeds: the seeds every candidate runs with.
        mlflow_uri: where ``mlflow:`` sources are read.

    Raises:
        ConfigError: no screening run of the sweep's method reached ``rank_step``.
    """
    base, full = flatten(space.base), space.base.train.max_steps
    screened: dict[str, list[WarmPoint]] = {}
    measured: dict[tuple[str, int], tuple[str, dict[str, float]]] = {}
    for source in sources:
        runs, _ = read_source(source, metric, mlflow_uri)
        for run in runs:
            point = run_point(run, space, base, rank_step)
            if isinstance(point, WarmPoint):
                screened.setdefault(_key(point.values), []).append(point)
            finished = run_point(run, space, base, full)
            if isinstance(finished, WarmPoint) and run.val_rows:
                measured.setdefault((_key(finished.values), run.config.train.seed), (run.name, dict(run.val_rows)))
    if not screened:
        raise ConfigError(f"final stage: no run of {', '.join(sources)} is this sweep's method with a {metric} "
                          f"at step {rank_step}; screen first (tune.py --stop-step {rank_step})")
    published = {k: plain(v) for k, v in space.published_point().items()}
    sign = 1.0 if mode == "max" else -1.0

    def screen(points: list[WarmPoint]) -> float:
        return statistics.fmean(p.value for p in points)

    own = screened.get(_key(published), [])
    ranked = sorted((g for g in screened.values() if g is not own), key=lambda g: -sign * screen(g))
    candidates = [{"name": PUBLISHED, "values": published, "runs": len(own), "screen": screen(own) if own else None}]
    candidates += [{"name": f"top{i + 1}", "values": g[0].values, "screen": screen(g), "runs": len(g)}
                   for i, g in enumerate(ranked[:top_k])]
    runs = []
    for c in candidates:
        for seed in seeds:
            name, rows = measured.get((_key(c["values"]), seed), ("", {}))
            runs.append(FinalRun(c["name"], c["values"], seed, name, rows))
    return FinalPlan(tuple(candidates), tuple(runs))


def with_final_plan(record: SweepRecord, space: SearchSpace) -> SweepRecord:
    """``record`` of a new final stage with its plan, once, when the sweep begins (``--resume`` keeps it): one
    trial per run that no earlier run stands for."""
    plan = plan_final_stage(record.final_stage, space, record.metric, record.mode, record.rank_step, record.top_k,
                            record.stage_seeds, record.mlflow_uri)
    return dataclasses.replace(record, final_candidates=plan.candidates, final_runs=tuple(r.to_dict() for r in plan.runs),
                               num_samples=sum(1 for r in plan.runs if not r.reused))


def plan_of(record: SweepRecord) -> FinalPlan:
    """The plan saved in a final stage's record."""
    return FinalPlan(tuple(record.final_candidates), tuple(FinalRun.from_dict(r) for r in record.final_runs))


def final_header(record: SweepRecord, choice: FinalChoice) -> str:
    """The best config's header lines of a final stage: its stages, budget, k and seeds, and the choice."""
    steps = int(load_yaml_text(record.base_config).train.max_steps)
    return (f"final stage of a staged search: top {record.top_k} of {', '.join(record.final_stage)} by "
            f"{record.metric} at step {record.rank_step}, and the published point, each run with seeds "
            f"{', '.join(map(str, record.stage_seeds))} to step {steps}\n"
            f"{choice.reason}\n")


@dataclass(frozen=True)
class FinalChoice:
    """What the final stage exports and why.

    Args:
        exported: the candidate exported (``published`` or ``top<i>``).
        winner: the candidate with the best mean val Dice over its seeds (the published point never wins alone).
        scores: mean val Dice over seeds of each candidate with runs.
        difference: winner minus published, mean per-image val Dice (seeds averaged first).
        low, high: its 95 % interval, seeds and val images resampled.
        reason: one sentence for the config's header.
    """

    exported: str
    winner: str
    scores: dict[str, float]
    difference: float
    low: float
    high: float
    reason: str


def _rows_of(run: FinalRun, rows: Mapping[tuple[str, int], Mapping[str, float]]) -> Mapping[str, float] | None:
    """A run's per-image val Dice: the reused run's, else its trial's (None when it did not finish)."""
    return run.val_rows or rows.get((run.candidate, run.seed))


def choose(plan: FinalPlan, rows: Mapping[tuple[str, int], Mapping[str, float]], seed: int = 0) -> FinalChoice:
    """The final stage's export from each run's per-image val Dice (``(candidate, seed) -> {id: Dice}``; the
    reused runs' rows come from the plan).

    Raises:
        ConfigError: the published point or every candidate has no finished run.
    """
    per: dict[str, list[Mapping[str, float]]] = {}
    for run in plan.runs:
        if got := _rows_of(run, rows):
            per.setdefault(run.candidate, []).append(got)
    if PUBLISHED not in per:
        raise ConfigError("final stage: no run of the published point finished, so nothing can be compared")
    scores = {name: statistics.fmean(statistics.fmean(r.values()) for r in rs) for name, rs in per.items()}
    tops = [name for name in scores if name != PUBLISHED]
    if not tops:
        raise ConfigError("final stage: no run of any candidate finished")
    winner = max(tops, key=lambda name: scores[name])
    difference = paired_bootstrap(mean_over_seeds(per[winner]), mean_over_seeds(per[PUBLISHED]), seed)[0]
    low, high = seed_image_bootstrap(per[winner], per[PUBLISHED], seed)
    interval = (f"{winner} − published: {100 * difference:+.2f} Dice points on val, 95 % CI [{100 * low:+.2f}, "
                f"{100 * high:+.2f}] over {len(per[winner])} and {len(per[PUBLISHED])} seeds and the val images")
    if low > 0:
        return FinalChoice(winner, winner, scores, difference, low, high, f"exported {winner}: {interval}, above 0")
    return FinalChoice(PUBLISHED, winner, scores, difference, low, high,
                       f"exported the published point: {interval}, not above 0 (within the seed noise)")


def choice_table(plan: FinalPlan, choice: FinalChoice, rows: Mapping[tuple[str, int], Mapping[str, float]]) -> str:
    """Markdown of the final stage: each candidate's screening value, its runs' val Dice and the choice."""
    lines = ["| candidate | screening value | seed | run | val Dice |", "|---|---|---|---|---|"]
    for c in plan.candidates:
        screen = "—" if c["screen"] is None else f"{c['screen']:.4f}"
        for run in (r for r in plan.runs if r.candidate == c["name"]):
            got = _rows_of(run, rows)
            dice = f"{statistics.fmean(got.values()):.4f}" if got else "did not finish"
            lines.append(f"| {c['name']} | {screen} | {run.seed} | {run.reused or 'trial'} | {dice} |")
    return "\n".join([*lines, "", choice.reason, ""])


__all__ = ["PUBLISHED", "SEED_KEY", "FinalChoice", "FinalPlan", "FinalRun", "choice_table", "choose", "final_header",
           "plan_final_stage", "plan_of", "with_final_plan"]
