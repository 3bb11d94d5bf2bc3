"""``fgi train`` / ``train.py``: train a config on Ray Train, score the test split, register the model."""

from __future__ import annotations

import argparse
import json
import sys

from fgi import budgets
from fgi.commands import error_line
from fgi.config import ConfigError
from fgi.data.errors import DataError
from fgi.search.final import final_config, train_final


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi train``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", default=None, help="config YAML, e.g. best_configs/<dataset>.yaml")
    src.add_argument("--from-mlflow", default=None, metavar="RUN_ID",
                     help="MLflow run whose best_config.yaml (sweep) or config.yaml (trial, final run) to train")
    parser.add_argument("--data-root", "--root", dest="data_root", default=None,
                        help="raw dataset folder (data.root); a portable best config names no data")
    parser.add_argument("--fixations", default=None, help="eye-tracking CSV (data.fixations) of kvasir and nci-isbi")
    parser.add_argument("--split-dir", default=None, help="folder of train.txt / val.txt / test.txt (data.split_dir)")
    parser.add_argument("--budget", default=None, choices=budgets.budget_names(),
                        help="compute preset (image size, widths, steps) applied on top of the config (default: "
                             "none, the config as is)")
    parser.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel Ray Train workers")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker; 0 trains on CPU (gloo)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker")
    parser.add_argument("--storage", default=None, help="local folder or URI for checkpoints (default: $FGI_HOME/ray_results)")
    parser.add_argument("--name", default=None, help="run name (default: fgi-<dataset>-final-<time>); the same name resumes")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or $FGI_HOME)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: fgi-<dataset>)")
    parser.add_argument("--register-as", default=None, help="registered model name (default: fgi-<dataset>)")
    parser.add_argument("--alias", dest="aliases", action="append", default=[], metavar="NAME",
                        help="point this registered-model alias (e.g. champion) at the new version; repeatable; "
                             "without it no alias moves")
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts from the latest checkpoint")


def main(args: argparse.Namespace) -> int:
    """Train and register; a bad config, option or run id prints one line and exits 2."""
    try:
        cfg, source = final_config(config=args.config, run_id=args.from_mlflow, mlflow_uri=args.mlflow_uri,
                                   budget=args.budget, max_steps=args.max_steps, data_root=args.data_root,
                                   fixations=args.fixations, split_dir=args.split_dir)
        result = train_final(cfg, source=source, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                             gpus_per_worker=args.gpus_per_worker, storage=args.storage, name=args.name,
                             mlflow_uri=args.mlflow_uri, experiment=args.experiment, register_as=args.register_as,
                             max_failures=args.max_failures, aliases=args.aliases, budget=args.budget)
    except (ConfigError, DataError, FileNotFoundError, LookupError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    best = result.best_metrics
    if result.test_metrics:
        print(json.dumps(result.test_metrics, indent=1))
    print(f"best checkpoint: step {int(best.get('step', 0))}, val_dice {best['val_dice']:.4f} ({result.checkpoint})")
    aliases = f", alias {', '.join(result.aliases)}" if result.aliases else ""
    print(f"registered {result.model_uri} (MLflow run {result.run_id}; budget {args.budget or 'none'}{aliases})")
    return 0
