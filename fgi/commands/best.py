"""``fgi best``: fetch the best sweep's ``best_config.yaml`` from MLflow and write it locally, in the portable form.

The best sweep is the FINISHED one with the best ``best_<metric>`` (``--metric``, default val_dice), not the
newest; ``--sweep NAME`` takes that sweep instead, ``--budget`` ranks only sweeps of one budget.
``--pick RULE`` takes a point of a multi-objective sweep's Pareto front instead of its exported one, by a
stated rule (``fgi.pareto``: "best val_dice with val_hd95 within 10%"), written into the config's header.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from fgi.budgets import budget_names, portable_config_text
from fgi.commands import error_line, user_message
from fgi.config import ConfigError, load_yaml_text
from fgi.files import atomic_write_text
from fgi.pareto import PickError
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
    parser.add_argument("--pick", default=None, metavar="RULE",
                        help="a multi-objective sweep: take the point of its Pareto front that RULE picks, e.g. "
                             "'best val_dice with infer_ms within 20%%' or 'best val_dice with val_hd95 within 2'")
    parser.add_argument("--out", default=None,
                        help="where to write it (default: $FGI_HOME/best_configs/<dataset>.yaml, absolute)")


def fetch_best(experiment: str, *, sweep: str | None = None, metric: str = "val_dice", budget: str | None = None,
               mlflow_uri: str | None = None, out: str | Path | None = None, pick_rule: str | None = None,
               ) -> tuple[Path, SweepChoice]:
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
        pick_rule: a ``fgi.pareto`` rule: the config of the front point it picks, not the exported one.

    Returns:
        (the written path, the chosen sweep).

    Raises:
        LookupError: no such experiment or sweep, or no finished sweep there with a best config.
        ConfigError: the stored config does not validate, or an unknown metric.
        PickError: a rule that does not parse or names an objective the front lacks.
    """
    from fgi import tracking
    from fgi.pareto import parse_rule, pick

    if metric not in METRIC_MODES:
        raise ConfigError(f"--metric: unknown metric {metric!r}; valid metrics are {sorted(METRIC_MODES)}")
    uri = tracking.resolve_uri(mlflow_uri)
    choice = tracking.fetch_best_config(uri, experiment, sweep=sweep, metric=metric, mode=METRIC_MODES[metric],
                                        budget=budget)
    rule = parse_rule(pick_rule) if pick_rule else None  # a rule that does not parse fails before any download
    picked = ""
    if rule is not None:
        from fgi.tracking.front import read_front

        front = read_front(uri, choice.run_id)
        index, how = pick([p["values"] for p in front["points"]], front["modes"], rule)
        point = front["points"][index]
        picked = f"picked trial {point['trial_id']} by {how}\n"
        choice = replace(choice, text=point["config"])
    cfg = load_yaml_text(choice.text, f"runs:/{choice.run_id}/best_config.yaml")
    path = Path(out).expanduser().resolve() if out else fgi_home() / "best_configs" / f"{cfg.data.dataset}.yaml"
    source = f"fetched by fgi best from MLflow run {choice.run_id} (experiment {experiment}, {uri})"
    if picked:
        text = "".join(f"# {line}\n" for line in (source, *picked.splitlines())) + choice.text
    elif choice.text.startswith("#"):
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
                                  mlflow_uri=args.mlflow_uri, out=args.out, pick_rule=args.pick)
    except PickError as exc:
        print(f"--pick: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(user_message(exc), file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print(f"chose {choice.describe()}")
    print(f"{path.resolve()} (from MLflow run {choice.run_id})")
    return 0
