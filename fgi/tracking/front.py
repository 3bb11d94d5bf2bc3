"""The Pareto front of a multi-objective sweep on its MLflow runs: a table, a JSON, a plot on the parent, a tag
on each front trial's child run; and the logged front read back (``fgi best --pick``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fgi.fields import OptionNotFound
from fgi.viz import front_figure

FRONT_TAG = "fgi.pareto_front"  # "true" on the child runs of the front's trials
FRONT_JSON = "pareto_front.json"
FRONT_TABLE = "pareto_front.md"
FRONT_PLOT = "pareto_front.png"


def front_table(front: Sequence[Mapping[str, Any]], objectives: Sequence[str], modes: Mapping[str, str]) -> str:
    """A Markdown table of the front's points (trial id and each objective, with its direction)."""
    head = " | ".join(f"{o} ({'up' if modes[o] == 'max' else 'down'})" for o in objectives)
    lines = [f"| trial | {head} |", "|---|" + "---|" * len(objectives)]
    for p in front:
        lines.append(f"| {p['trial_id']} | " + " | ".join(f"{p['values'][o]:.4f}" for o in objectives) + " |")
    return "\n".join(lines) + "\n"


def log_front(tracker: Any, points: Sequence[Mapping[str, Any]], front: Sequence[int], objectives: Sequence[str],
              modes: Mapping[str, str], configs: Mapping[str, str]) -> dict[str, str]:
    """Queue the front's plot on the sweep's parent run and the front tag on its trials' child runs; returns the
    texts (``pareto_front.md`` and ``.json``) for ``SweepTracker.finish``.

    Args:
        tracker: the sweep's ``SweepTracker`` (started, not finished).
        points: every scored trial as {"trial_id", "values": {objective: value}}.
        front: indices of the front's points.
        objectives: the objectives, the sweep's metric first.
        modes: their directions.
        configs: trial id -> portable config text of each front trial.
    """
    from fgi.tracking.queue import QUEUES

    q = tracker.queue or QUEUES[tracker.parent_run_id]
    on = [points[i] for i in front]
    for p in on:
        ref = {"exp": tracker.experiment_id, "sweep": tracker.sweep, "trial": p["trial_id"],
               "parent": tracker.parent_run_id}
        q.put("log_batch", run=ref, tags={FRONT_TAG: "true"})
    if len(objectives) >= 2:
        figure = tracker.root / FRONT_PLOT
        figure.parent.mkdir(parents=True, exist_ok=True)
        front_figure([p["values"] for p in points], front, objectives).savefig(figure)
        q.put("files", run=tracker.parent_run_id, local=str(figure), path="")
    data = {"objectives": list(objectives), "modes": dict(modes), "trials": len(points),
            "points": [{**p, "config": configs[p["trial_id"]]} for p in on]}
    return {FRONT_TABLE: front_table(on, objectives, modes), FRONT_JSON: json.dumps(data, indent=1)}


def read_front(uri: str, run_id: str) -> dict[str, Any]:
    """The ``pareto_front.json`` of a sweep's parent run.

    Raises:
        OptionNotFound: the run logged no front (not a multi-objective sweep).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    if FRONT_JSON not in {a.path for a in client.list_artifacts(run_id)}:
        raise OptionNotFound("pick", f"run {run_id} has no {FRONT_JSON}: --pick needs a sweep with several --metric")
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, FRONT_JSON, tmp)).read_text())


__all__ = ["FRONT_JSON", "FRONT_PLOT", "FRONT_TABLE", "FRONT_TAG", "front_table", "log_front", "read_front"]
