"""``fgi release``: a model folder to ship: weights only, optionally half precision, its val score checked.

The source is any model ``fgi predict`` reads (a checkpoint folder, an ensemble folder, a registered model).
The release keeps the models' weights, config, step and image normalization, and drops the optimizer,
scheduler and RNG state that only resuming needs. Both are scored on the val part of the model's prepared
split; the release is written only if its val Dice equals the source's to ``--check-decimals`` decimals.
It is built beside ``--out`` and renamed into place, so a refused or interrupted release leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from fgi.checkpoint import PRECISIONS
from fgi.commands import error_line
from fgi.commands.predict import MODEL_HELP, URI_HELP, load_model
from fgi.data.errors import DataError
from fgi.fields import OptionError
from fgi.files import folder_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fgi release``."""
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", required=True, type=Path, help="folder to write (replaced as a whole)")
    parser.add_argument("--precision", default="fp16", choices=sorted(PRECISIONS),
                        help="how floating weights are stored (default fp16: half the size)")
    parser.add_argument("--check-decimals", type=int, default=3,
                        help="decimals to which the release's val Dice must equal the source's (default 3)")
    parser.add_argument("--mlflow-uri", default=None, help=URI_HELP)


def release(model: str, out: Path, precision: str = "fp16", check_decimals: int = 3,
            mlflow_uri: str | None = None) -> dict[str, Any]:
    """Write the release of ``model`` to ``out`` after checking its val Dice; returns both scores and its size.

    Raises:
        OptionError: ``check_decimals`` out of range, or a release whose val Dice differs from the source's
            at ``check_decimals`` decimals (nothing is written).
        DataError: the model's data cannot be prepared, or its split has no val part.
    """
    from fgi.checkpoint import METRICS_FILE, replace_dir, write_checkpoint
    from fgi.data.dataset import ensure_prepared
    from fgi.ensemble import Ensemble, write_ensemble
    from fgi.run.evaluation import evaluate_split

    if not 0 <= check_decimals <= 6:
        raise OptionError("check_decimals", f"{check_decimals} must lie in 0..6")
    trainer, normalization = load_model(model, mlflow_uri)
    ensure_prepared(trainer.cfg)
    before = evaluate_split(trainer, "val", num_workers=0)
    if not before.get("val_n"):
        raise DataError(f"{model}: its split has no val part to check the release on")
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".release"))
    try:
        built = staging / out.name
        if isinstance(trainer, Ensemble):
            extra = {k: v for k, v in trainer.info.items() if k not in ("members", "precision")}
            write_ensemble(built, trainer, extra, [{k: v for k, v in m.items() if k != "folder"}
                                                  for m in trainer.info["members"]], precision)
        else:
            write_checkpoint(built, trainer, {}, normalization, release=precision)
        after = evaluate_split(_released_weights(built, trainer), "val", num_workers=0)
        if round(after["val_dice"], check_decimals) != round(before["val_dice"], check_decimals):
            raise OptionError("precision", f"{precision} changes val Dice from {before['val_dice']:.6f} to "
                              f"{after['val_dice']:.6f} at {check_decimals} decimals; nothing was written "
                              "(try --precision fp32)")
        if not isinstance(trainer, Ensemble):  # the folder is still private: rewritten in place, renamed whole
            (built / METRICS_FILE).write_text(json.dumps({"step": trainer.step, **after, "released_from": _source_name(model),
                                                          "source_val_dice": before["val_dice"]}, indent=1))
        replace_dir(built, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"precision": precision, "source_val": before, "release_val": after, "bytes": folder_bytes(out), "out": out}


def _source_name(model: str) -> str:
    """How the release names its source: a registry URI as given, a local folder by its last two parts (a
    machine's absolute path would not travel with the folder)."""
    path = Path(model)
    return "/".join(path.resolve().parts[-2:]) if path.exists() else model


def _released_weights(folder: Path, source: Any) -> Any:
    """The released weights under the source's configs: a release keeps no data paths (``without_machine``),
    so it is scored on the source's prepared val part."""
    from fgi.checkpoint import read_checkpoint
    from fgi.ensemble import Ensemble, read_ensemble_info

    def rebuilt(member_folder: Path, member: Any) -> Any:
        trainer = type(member)(member.cfg, member.device)
        trainer.load_state_dict(read_checkpoint(member_folder))
        return trainer

    if not isinstance(source, Ensemble):
        return rebuilt(folder, source)
    folders = [folder / m["folder"] for m in read_ensemble_info(folder)["members"]]
    return Ensemble([rebuilt(f, m) for f, m in zip(folders, source.members, strict=True)],
                    [source.normalization] * len(folders), [str(f) for f in folders])


def main(args: argparse.Namespace) -> int:
    """Release; bad input prints one line naming it and exits 2."""
    try:
        done = release(args.model, args.out, args.precision, args.check_decimals, args.mlflow_uri)
    except (OptionError, DataError, ValueError, FileNotFoundError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    print(f"val Dice {done['source_val']['val_dice']:.4f} (source) and {done['release_val']['val_dice']:.4f} "
          f"(release, {done['precision']}) on {int(done['release_val']['val_n'])} val images")
    print(f"wrote {done['out']} ({done['bytes'] / 1e6:.2f} MB)")
    return 0
