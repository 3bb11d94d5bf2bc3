"""``fgi best``: fetch a sweep's ``best_config.yaml`` from MLflow and write it locally, in the portable form."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgi.budgets import portable_config_text
from fgi.config import ConfigError, load_yaml_text
from fgi.files import atomic_write_text
from fgi.paths import fgi_home


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi best``."""
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the sweep (e.g. fgi-kvasir)")
    parser.add_argument("--sweep", default=None, help="sweep name (default: the latest sweep with a best config)")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or $FGI_HOME)")
    parser.add_argument("--out", default=None,
                        help="where to write it (default: $FGI_HOME/best_configs/<dataset>.yaml, absolute)")


def fetch_best(experiment: str, *, sweep: str | None = None, mlflow_uri: str | None = None,
               out: str | Path | None = None) -> tuple[Path, str]:
    """Write the best config of a sweep (default the latest with one), method keys only, and return (its path,
    the run id).

    Raises:
        LookupError: no such experiment, or no sweep there with a best config.
        ConfigError: the stored config does not validate.
    """
    from fgi import tracking

    uri = tracking.resolve_uri(mlflow_uri)
    text, run_id = tracking.fetch_best_config(uri, experiment, sweep)
    cfg = load_yaml_text(text, f"runs:/{run_id}/best_config.yaml")
    path = Path(out).expanduser().resolve() if out else fgi_home() / "best_configs" / f"{cfg.data.dataset}.yaml"
    header = (f"fgi best config of sweep run {run_id} (experiment {experiment}, {uri})\n"
              "method hyperparameters only: data location and compute come from train.py's flags or --budget")
    atomic_write_text(path, portable_config_text(cfg, (), header))
    return path, run_id


def main(args: argparse.Namespace) -> int:
    """Fetch and write; exit 1 when MLflow holds no best config, 2 when the stored one is invalid."""
    try:
        path, run_id = fetch_best(args.experiment, sweep=args.sweep, mlflow_uri=args.mlflow_uri, out=args.out)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path.resolve()} (from MLflow run {run_id})")
    return 0
