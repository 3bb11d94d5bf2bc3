"""Rebuild the best config of protocol v2's arm (e) sweep from its seeded TPE sampler.

The sweep (``docs/RESULTS.md``, "Arm (e)'s sweep") ran on a machine that was lost after 7 of its 10 trials
had finished; its Tune state and its interim best config went with it, and only the table of those trials
(four of their fifteen knobs, and their val Dice) was kept. The sampler is seeded, and TPE reads finished
trials only through the ranking of their values, so asking it again in the sweep's order, telling each
finished trial its last reported val Dice, proposes the same configs. This script does that for every order
in which the two concurrent trials could have finished, keeps the orders whose proposals contain all seven
recorded trials, checks that they agree on the best one, and writes its config as ``tune.py`` writes a best
config::

    python benchmarks/protocol_kvasir.py --write-config /tmp/d_fgi.yaml
    python benchmarks/replay_e_sweep.py --config /tmp/d_fgi.yaml --out benchmarks/results/e_sweep_kvasir.yaml
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import optuna

from fgi.budgets import portable_config_text
from fgi.files import atomic_write_text
from fgi.search.searchers import tpe_sampler  # noqa: E402
from fgi.search.settings import SweepOptions, SweepRecord, new_record
from fgi.search.space import OptunaDefineByRun, SearchSpace
from fgi.search.sweep import best_config_header

# The recorded trials (RESULTS.md): (mask ratio, decoy ratio, lr, CWC weight) at the table's precision ->
# (trial id, last reported val Dice: at step 1000, or 500 for the two that ASHA stopped).
RECORDED = {
    (0.30, 0.00, 1.0e-3, 1.00): ("617280d8", 0.530), (0.36, 0.39, 2.3e-3, 1.75): ("196f481a", 0.370),
    (0.09, 0.25, 1.4e-3, 1.88): ("d5b91bfd", 0.504), (0.34, 0.06, 1.5e-4, 0.56): ("12e72a99", 0.546),
    (0.47, 0.03, 1.4e-3, 2.59): ("dcd24d2c", 0.458), (0.37, 0.38, 4.1e-3, 2.62): ("99e08c92", 0.444),
    (0.46, 0.19, 1.8e-4, 0.35): ("b22e9403", 0.5543)}
CONCURRENT = 2
SPACE = Path(__file__).resolve().parent / "spaces" / "e_sweep.yaml"  # the space as the sweep ran, before it grew


def table_key(values: dict[str, Any]) -> tuple[float, float, float, float]:
    """A proposal's four tabled knobs at the table's precision."""
    return (round(values["masking.mask_ratio"], 2), round(values["masking.decoy_ratio"], 2),
            float(f"{values['optim.lr']:.1e}"), round(values["loss.cwc_weight"], 2))


def replay(record: SweepRecord, space: SearchSpace, order: tuple[int, ...]) -> list[dict[str, Any]] | None:
    """The proposals of the sweep when its running trials finish in ``order`` (index into the two running).

    Returns None when the order would finish a trial that is not among the recorded ones.
    """
    study = optuna.create_study(direction="maximize" if record.mode == "max" else "minimize",
                                sampler=tpe_sampler(record.seed, record.startup_trials))
    study.enqueue_trial(space.search_point(space.published_point()))  # as OptunaSearch's points_to_evaluate
    suggest = OptunaDefineByRun(space)
    asked: list[tuple[Any, dict[str, Any]]] = []

    def ask() -> int:
        trial = study.ask()
        asked.append((trial, suggest(trial)))
        return len(asked) - 1

    running = [ask() for _ in range(CONCURRENT)]
    for pick in order:
        done = running.pop(pick)
        key = table_key(asked[done][1])
        if key not in RECORDED:
            return None
        study.tell(asked[done][0], RECORDED[key][1])
        running.append(ask())
    return [values for _, values in asked]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="arm (d)'s config, from protocol_kvasir.py --write-config")
    ap.add_argument("--out", type=Path, required=True, help="where to write the best config")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the sweep's own options: tune.py --dataset kvasir --config d_fgi.yaml --budget laptop --max-steps 1000
    # --max-concurrent 2 --name e-sweep
    record, space = new_record(SweepOptions(dataset="kvasir", config=args.config, budget="laptop", max_steps=1000,
                                            max_concurrent=CONCURRENT, name="e-sweep", space=str(SPACE)))
    finished = len(RECORDED)
    consistent = [p for order in itertools.product(range(CONCURRENT), repeat=finished)
                  if (p := replay(record, space, order)) is not None and set(RECORDED) <= set(map(table_key, p))]
    if not consistent:
        print("no finishing order reproduces the recorded trials", file=sys.stderr)
        return 1
    trial, value = max(RECORDED.values(), key=lambda item: item[1])
    best = [v for proposals in consistent for v in proposals if RECORDED.get(table_key(v), ("",))[0] == trial]
    if any(v != best[0] for v in best):
        print(f"the consistent orders disagree on trial {trial}'s config", file=sys.stderr)
        return 1
    print(f"{len(consistent)} finishing orders reproduce all {finished} recorded trials; they agree on {trial}")
    header = best_config_header(record, trial, {record.metric: value, "step": space.base.train.max_steps})
    header += ("\nrebuilt after the sweep's machine was lost: the seeded TPE sampler replayed with the finished\n"
               f"trials' val Dice reproduces all {finished} finished trials' configs; this is trial {trial}'s, the best of the "
               f"{finished} (benchmarks/replay_e_sweep.py)")
    atomic_write_text(args.out, portable_config_text(space.apply(space.values_of(best[0])), space.keys, header))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
