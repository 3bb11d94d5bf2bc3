"""Read back the trials of earlier sweeps from MLflow: each child run's config and one metric's history.

A warm start (``fgi.search.warm``) tells them to a new sweep's searcher; this module only reads them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from fgi.tracking.trials import KIND_TAG, TRIAL_TAG

CONFIG_ARTIFACT = "config.yaml"  # the resolved config every trial run logs
_MAX_RUNS = 10000  # trials of one experiment read back


@dataclass(frozen=True)
class TrialHistory:
    """One trial run: ``<experiment>/<trial id>``, its config YAML, and ``step -> value`` of one metric."""

    name: str
    config_text: str
    curve: dict[int, float]


class TrialHistoryError(LookupError):
    """The experiment does not exist on the server; the message names both."""


def trial_histories(uri: str, experiment: str, metric: str) -> tuple[list[TrialHistory], dict[str, int]]:
    """The trial runs of ``experiment`` on ``uri`` with their config and ``metric`` history; and the runs that
    could not be read (``reason -> count``, the reason naming the first such run).

    Raises:
        TrialHistoryError: no such experiment.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise TrialHistoryError(f"no experiment {experiment!r} on {uri}")
    found: list[TrialHistory] = []
    bad: dict[str, int] = {}
    runs = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'trial'", max_results=_MAX_RUNS)
    with tempfile.TemporaryDirectory(prefix="fgi-history-") as tmp:
        for run in runs:
            name = f"{experiment}/{run.data.tags.get(TRIAL_TAG, run.info.run_id)}"
            try:
                local = client.download_artifacts(run.info.run_id, CONFIG_ARTIFACT, tmp)
                text = Path(local).read_text()
                curve = {int(m.step): float(m.value) for m in client.get_metric_history(run.info.run_id, metric)}
            except (MlflowException, OSError) as exc:
                reason = f"unreadable trials ({name}: {str(exc)[:80]})"
                bad[reason] = bad.get(reason, 0) + 1
                continue
            found.append(TrialHistory(name, text, curve))
    return found, bad


__all__ = ["CONFIG_ARTIFACT", "TrialHistory", "TrialHistoryError", "trial_histories"]
