"""Old module paths of the flat layout (fgi 0.1), kept for one release so pickles keep loading.

Ray Tune's saved experiment state and Ray Train's restored trainers pickle classes and functions by module
path (the ASHA scheduler, the Optuna space, callbacks, trainables), and an MLflow pyfunc model pickles
``trainer_class``. ``install`` puts a finder on ``sys.meta_path`` that answers an old path with the module
now at the new one (the same module object, so classes stay identical); ``fgi.search`` and ``fgi.tracking``
are packages now and answer the old modules' names themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

MOVED: dict[str, str] = {
    "fgi.engine": "fgi.method.engine", "fgi.loop": "fgi.method.loop", "fgi.metrics": "fgi.method.metrics",
    "fgi.evaluation": "fgi.run.evaluation", "fgi.distributed": "fgi.run.worker",
    "fgi.search_params": "fgi.search.params", "fgi.search_space": "fgi.search.space",
    "fgi.sweep_console": "fgi.search.console", "fgi.sweep_settings": "fgi.search.settings",
    "fgi.asha": "fgi.search.asha", "fgi.trial": "fgi.search.trial", "fgi.watchdog": "fgi.search.watchdog",
    "fgi.final": "fgi.search.final",
    "fgi.tracking_best": "fgi.tracking.best", "fgi.tracking_queue": "fgi.tracking.queue",
    "fgi.tracking_staging": "fgi.tracking.staging", "fgi.tracking_trials": "fgi.tracking.trials",
}
# names of the old fgi.distributed that moved on to the Ray Train adapter
RAY_TRAIN_NAMES = frozenset({"RayTrainReporter", "build_trainer", "fit", "train_loop_per_worker", "worker_threads"})


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _DistributedLoader(_AliasLoader):
    """The old ``fgi.distributed`` spans two modules: a shim that reads from both."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        worker, ray_train = importlib.import_module("fgi.run.worker"), importlib.import_module("fgi.search.ray_train")
        shim = ModuleType(spec.name, "Alias of fgi.run.worker and fgi.search.ray_train (fgi 0.1 path).")
        shim.__dict__.update({k: v for k, v in vars(worker).items() if not k.startswith("__")})
        shim.__dict__.update({k: getattr(ray_train, k) for k in RAY_TRAIN_NAMES})
        return shim


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name not in MOVED:
            return None
        loader = _DistributedLoader(MOVED[name]) if name == "fgi.distributed" else _AliasLoader(MOVED[name])
        return importlib.util.spec_from_loader(name, loader)


def install() -> None:
    """Answer the old module paths (once per process)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
