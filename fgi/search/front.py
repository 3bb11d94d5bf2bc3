"""The end of a multi-objective sweep: every finished trial's objectives, their Pareto front, the exported point.

Optuna is told each trial's last report (the values at the stage's end), so the front is built from the same
reports. The exported config is the front's best point on the sweep's first objective (its ``metric``); the
whole front, with each point's config, goes to the parent run, where ``fgi best --pick`` applies another rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fgi.pareto import PickRule, pareto_front, pick


def last_rows(results: Sequence[Any], objectives: Sequence[str], length: int) -> list[tuple[Any, dict[str, Any]]]:
    """(result, its last report) of each trial that reported every objective at step ``length`` or later."""
    out = []
    for result in results:
        df = result.metrics_dataframe
        if df is None or "step" not in getattr(df, "columns", ()) or any(o not in df.columns for o in objectives):
            continue
        last = df[df["step"] == df["step"].max()].iloc[-1].to_dict()
        if int(last["step"]) >= length:
            out.append((result, {k: v for k, v in last.items() if isinstance(v, (int, float, str))}))
    return out


def finish_front(results: Sequence[Any], objectives: Sequence[str], modes: Mapping[str, str], length: int,
                 tracker: Any, config_text: Callable[[Any, Mapping[str, Any], str], str],
                 ) -> tuple[Any, dict[str, Any], str, dict[str, str]] | None:
    """The front of ``results`` logged through ``tracker``, and the point exported.

    Args:
        results: the sweep's Tune results.
        objectives: the sweep's objectives, its metric first.
        modes: their directions.
        length: the stage's length; trials that ended before it are not on the front.
        tracker: the sweep's ``SweepTracker``.
        config_text: (result, report, header lines) -> the portable config text of that trial.

    Returns:
        (exported result, its report, its header lines, texts for the parent run), or None when no trial
        reported every objective at the stage's end.
    """
    from fgi.tracking.front import log_front

    rows = last_rows(results, objectives, length)
    if not rows:
        return None
    points = [{"trial_id": Path(r.path).name.removeprefix("trial_"), "values": {o: float(row[o]) for o in objectives}}
              for r, row in rows]
    front = pareto_front([p["values"] for p in points], modes)
    chosen, how = pick([points[i]["values"] for i in front], modes, PickRule(objectives[0]))
    result, row = rows[front[chosen]]
    line = (f"multi-objective: {', '.join(f'{o} ({modes[o]})' for o in objectives)}; Pareto front of {len(front)} "
            f"of {len(points)} trial(s); exported by {how} (fgi best --pick takes another)\n")
    configs = {points[i]["trial_id"]: config_text(rows[i][0], rows[i][1], "") for i in front}
    texts = log_front(tracker, points, front, objectives, modes, configs)
    return result, row, line, texts


__all__ = ["finish_front", "last_rows"]
