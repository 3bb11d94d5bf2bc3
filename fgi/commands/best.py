"""``fgi best``: fetch the best sweep's ``best_config.yaml`` from MLflow and write it locally, in the portable form.

The best sweep is the FINISHED one with the best ``best_<metric>`` (``--metric``, default val_dice), not the
newest; ``--sweep NAME`` takes that sweep instead, ``--budget`` ranks only sweeps of one budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fgi.budgets import budget_names, portable_config_text
from fgi.commands import error_line, user_message
from fgi.config import ConfigError, load_yaml_text
from fgi.files import atomic_write_text
from fgi.paths import fgi_home
from fgi.search.settings import METRIC_MODES

if TYPE_CHECKING:
    from fgi.tracking.best import SweepChoice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi best``."""
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the sweep (e.g. fgi-kvasir)")
    parser.add_argument("--sweep", default=None,
                        help="sweep name (default: the FINISHED sweep with the best --metric that has a best config)")
    parser.add_argument("--metric", default="val_dice", choices=sorted(METRIC_MODES),
                        help="metric that ranks the sweeps, by their best trial (default: val_dice; hd95 and asd: lower wins)")
    parser.add_argument("--budget", default=None, choices=budget_names(),
                        help="rank only sweeps run at this budget (default: any)")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or $FGI_HOME)")
    parser.add_argument("--out", default=None,
                        help="where to write it (default: $FGI_HOME/best_configs/<dataset>.yaml, absolute)")


def fetch_best(experiment: str, *, sweep: str | None = None, metric: str = "val_dice", budget: str | None = None,
               mlflow_uri: str | None = None, out: str | Path | None = None) -> tuple[Path, SweepChoice]:
    """Write the best config of the best finished sweep (or of sweep ``sweep``), method keys only.

    The stored config is the portable one the sweep wrote (a comment header naming sweep, trial, metric,
    budget and commit): it is written as is under one more line naming the MLflow run. A sweep logged before
    configs were stored in that form (no header) is converted.

    Args:
        experiment: MLflow experiment.
        sweep: a sweep name; default the best finished sweep.
        metric: ranking metric (``fgi.search.settings.METRIC_MODES`` gives its direction).
        budget: rank only sweeps of this budget.
        mlflow_uri: tracking URI.
        out: output file; default ``$FGI_HOME/best_configs/<dataset>.yaml``.

    Returns:
        (the written path, the chosen sweep).

    Raises:
        LookupError: no such experiment or sweep, or no finished sweep there with a best config.
        ConfigError: the stored config does not validate, or an unknown metric.
    """
    from fgi import tracking

    if metric not in METRIC_MODES:
        raise ConfigError(f"--metric: unknown metric {metric!r}; valid metrics are {sorted(METRIC_MODES)}")
    uri = tracking.resolve_uri(mlflow_uri)
    choice = tracking.fetch_best_config(uri, experiment, sweep=sweep, metric=metric, mode=METRIC_MODES[metric],
                                        budget=budget)
    cfg = load_yaml_text(choice.text, f"runs:/{choice.run_id}/best_config.yaml")
    path = Path(out).expanduser().resolve() if out else fgi_home() / "best_configs" / f"{cfg.data.dataset}.yaml"
    source = f"fetched by fgi best from MLflow run {choice.run_id} (experiment {experiment}, {uri})"
    if choice.text.startswith("#"):
        text = f"# {source}\n{choice.text}"
    else:
        text = portable_config_text(cfg, (), f"{source}\nmethod hyperparameters only: data location and compute come "
                                             "from train.py's flags or --budget")
    atomic_write_text(path, text)
    return path, choice


def main(args: argparse.Namespace) -> int:
    """Fetch and write; exit 1 when MLflow holds no best config, 2 when the stored one is invalid."""
    try:
        path, choice = fetch_best(args.experiment, sweep=args.sweep, metric=args.metric, budget=args.budget,
                                  mlflow_uri=args.mlflow_uri, out=args.out)
    except LookupError as exc:
        print(user_message(exc), file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print(f"chose {choice.describe()}")
    print(f"{path.resolve()} (from MLflow run {choice.run_id})")
    return 0
