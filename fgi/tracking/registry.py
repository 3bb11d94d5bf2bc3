"""The MLflow model registry: log a checkpoint or ensemble folder as a pyfunc model and register it; fetch a model's files.

Trust: a ``models:/`` pyfunc wrapper is cloudpickled (``mlflow.pyfunc.load_model`` runs registry code); fgi
downloads only the files and reads ``trainer.pt`` with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

import fgi
from fgi.checkpoint import CHECKPOINT_FILE, NORMALIZATION_FILE
from fgi.ensemble import ENSEMBLE_FILE, is_ensemble, load_model_folder
from fgi.fields import OptionError
from fgi.tracking.runs import _client, resolve_uri


@contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (``log_model``, ``download_artifacts`` of ``models:/``) reads the process-wide URIs,
    and setting them also exports ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI``: set them for the block
    only, then put back what was there."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


MODEL_ARTIFACTS = "artifacts"  # folder of a logged pyfunc model that holds its checkpoint files


@functools.cache
def model_class() -> type:
    """The MLflow pyfunc class of fgi models (``predict``: images (B, C, H, W) to probabilities), built on
    first use (MLflow warns at class creation about ``predict``'s untyped plain-array input)."""

    class FgiModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc wrapper of an fgi checkpoint, rebuilt as ``trainer_class``."""

        def __init__(self, trainer_class: type) -> None:
            self.trainer_class = trainer_class

        def load_context(self, context: Any) -> None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            if "ensemble" in context.artifacts:
                folder = Path(context.artifacts["ensemble"])
            else:
                folder = Path(context.artifacts["checkpoint"]).parent
            self.trainer, self.normalization = load_model_folder(folder, self.trainer_class, device)

        def predict(self, context, model_input, params=None):
            import numpy as np
            import torch

            probs = self.trainer.predict(torch.as_tensor(np.asarray(model_input, dtype=np.float32)))
            return probs.cpu().numpy()

    return FgiModel


def register_model(uri: str, run_id: str, checkpoint_dir: str | os.PathLike, name: str, trainer_class: type, *,
                   aliases: Sequence[str] = (), tags: Mapping[str, str] | None = None) -> str:
    """Log a checkpoint folder (or an ensemble folder, ``fgi.ensemble``) on ``run_id`` as a pyfunc model and
    register it as ``name``; returns the version.

    ``trainer_class`` is the engine class the pyfunc wrapper rebuilds (``fgi.method.engine.TeacherStudentTrainer``),
    pickled by reference. The new version gets ``tags`` and points the aliases ``aliases`` (e.g. ``champion``)
    at itself; no other alias moves.
    """
    client = _client(uri)
    folder = Path(checkpoint_dir)
    if is_ensemble(folder):
        artifacts = {"ensemble": str(folder)}
    else:
        artifacts = {"checkpoint": str(folder / CHECKPOINT_FILE), "normalization": str(folder / NORMALIZATION_FILE)}
    with _fluent_uri(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model_class()(trainer_class), artifacts=artifacts,
            registered_model_name=name, pip_requirements=[f"fgi=={fgi.__version__}"])
    version = str(info.registered_model_version)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    return version


@contextmanager
def fetch_model(model: str, uri: str | None = None) -> Iterator[Path]:
    """A local checkpoint folder (``trainer.pt``, ``normalization.json``) or ensemble folder of ``model`` during
    the ``with`` block.

    ``model`` is ``models:/<name>/<version>``, a ``runs:/<id>/<path>`` model logged by ``register_model``,
    or a local checkpoint folder or its ``trainer.pt``. A registered model's files are downloaded into a
    temporary folder, removed after the block; its pickled pyfunc wrapper is downloaded, never loaded.

    Raises:
        ValueError: when the model cannot be found or holds no fgi checkpoint; the message names it.
    """
    p = Path(model)
    if p.exists():
        yield p if p.is_dir() else p.parent
        return
    tracking_uri = resolve_uri(uri)
    with tempfile.TemporaryDirectory(prefix="fgi-model-") as tmp:
        try:
            with _fluent_uri(tracking_uri):  # a models:/ URI resolves through the process-wide registry URI
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=tmp))
        except mlflow.exceptions.MlflowException as exc:
            raise OptionError("model", f"cannot load {model!r} from {tracking_uri} ({exc.message})") from None
        folder = local / MODEL_ARTIFACTS
        ensembles = sorted(p.parent for p in folder.glob(f"*/{ENSEMBLE_FILE}"))
        if len(ensembles) == 1 and not (folder / CHECKPOINT_FILE).is_file():
            folder = ensembles[0]
        elif not (folder / CHECKPOINT_FILE).is_file():
            raise OptionError("model", f"{model!r} holds no {MODEL_ARTIFACTS}/{CHECKPOINT_FILE} and no one "
                             f"{MODEL_ARTIFACTS}/*/{ENSEMBLE_FILE}; it was not registered by fgi")
        yield folder


__all__ = ["MODEL_ARTIFACTS", "fetch_model", "model_class", "register_model"]
