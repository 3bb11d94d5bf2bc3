"""``fgi predict``: PNG masks and overlays for a folder of images, with a registered model or a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fgi.commands import error_line
from fgi.config import TTA_MODES
from fgi.data.errors import DataError

if TYPE_CHECKING:
    from fgi.ensemble import Ensemble
    from fgi.method.engine import TeacherStudentTrainer

MODEL_HELP = ("models:/<name>/<version>, runs:/<run>/model, a checkpoint folder or its trainer.pt, or an ensemble "
              "folder (fgi ensemble)")
URI_HELP = "MLflow tracking URI (default: MLFLOW_TRACKING_URI or $FGI_HOME)"
THRESHOLD_HELP = "probability above which a pixel is lesion"
TTA_HELP = "test-time flips averaged at inference (default: the model's own model.tta)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi predict``."""
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--mlflow-uri", default=None, help=URI_HELP)
    parser.add_argument("--images", required=True, type=Path, help="folder of images to segment")
    parser.add_argument("--out", required=True, type=Path, help="folder for <name>_mask.png and <name>_overlay.png")
    parser.add_argument("--threshold", type=float, default=0.5, help=THRESHOLD_HELP)
    parser.add_argument("--tta", default=None, choices=TTA_MODES, help=TTA_HELP)


def check_threshold(value: float) -> None:
    """Raise ``ValueError`` naming ``--threshold`` unless it lies in (0, 1)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"--threshold: {value} must lie in (0, 1)")


def load_model(model: str, mlflow_uri: str | None,
               tta: str | None = None) -> tuple[TeacherStudentTrainer | Ensemble, dict[str, Any]]:
    """The predictor (an engine, or an ensemble of them) and image normalization of ``--model`` (see
    ``fgi.tracking.fetch_model``), on CUDA when available; ``tta`` replaces its ``model.tta`` (each member's)."""
    import torch

    from fgi import tracking
    from fgi.ensemble import load_model_folder
    from fgi.method.engine import TeacherStudentTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tracking.fetch_model(model, mlflow_uri) as folder:
        predictor, normalization = load_model_folder(folder, TeacherStudentTrainer, device)
    if tta is not None:
        set_tta(predictor, tta)
    return predictor, normalization


def set_tta(predictor: TeacherStudentTrainer | Ensemble, tta: str) -> None:
    """Make ``predictor`` (each member of an ensemble) answer with the test-time flips ``tta``."""
    from fgi.config import override

    engines = getattr(predictor, "members", [predictor])
    for engine in engines:
        engine.cfg = override(engine.cfg, {"model.tta": tta})
    predictor.cfg = engines[0].cfg


def main(args: argparse.Namespace) -> int:
    """Predict every image of ``--images``; bad input prints one line naming it and exits 2."""
    from fgi.run.evaluation import predict_folder

    try:
        check_threshold(args.threshold)
        if not args.images.is_dir():
            raise DataError(f"--images: {args.images} is not a folder")
        trainer, normalization = load_model(args.model, args.mlflow_uri, args.tta)
        files = predict_folder(trainer, normalization, args.images, args.out, args.threshold)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print(f"wrote {len(files)} masks and overlays to {args.out.resolve()}")
    return 0
