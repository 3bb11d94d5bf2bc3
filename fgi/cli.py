"""fgi: prepare gaze data, describe lesions, search hyperparameters, train, evaluate and predict.

Each subcommand lives in the module that owns it; that module exposes ``add_arguments(parser)`` and
``main(args) -> int``. Modules are imported only when their subcommand runs, so ``fgi --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# No phone-home or hub lookups: set by the commands (never at import), inherited by a local Ray.
OFFLINE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("fgi.commands.prepare", "build the cache of gaze heatmaps, CRF maps, descriptions and embeddings"),
    "synth": ("fgi.commands.synth", "write the synthetic dataset as a raw folder (images/, masks/, split files)"),
    "describe": ("fgi.commands.describe", "print lesion descriptions for a few images"),
    "tune": ("fgi.commands.tune", "hyperparameter sweep: Ray Tune + Optuna TPE + ASHA over Ray Train trials, logged to MLflow"),
    "train": ("fgi.commands.train", "train a config (best_configs/<dataset>.yaml or an MLflow run) and register the model"),
    "best": ("fgi.commands.best", "fetch a sweep's best_config.yaml from MLflow"),
    "predict": ("fgi.commands.predict", "write PNG masks and overlays for a folder of images with a registered model"),
    "evaluate": ("fgi.commands.evaluate", "Dice, IoU, HD95 and ASD of a model or checkpoint on a split"),
    "ensemble": ("fgi.commands.ensemble", "one model from a sweep's best K trials (mean of probabilities), scored on val, registered"),
    "release": ("fgi.commands.release", "a model folder to ship: weights only, optionally fp16, its val Dice checked"),
    "fidelity": ("fgi.commands.fidelity", "how well val Dice at an early step ranks the final val Dice of finished runs"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fgi`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    parser = argparse.ArgumentParser(prog="fgi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if argv[:1] == [name]:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
