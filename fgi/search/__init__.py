"""The search on Ray: a sweep is a Ray Tune ``Tuner`` with an Optuna searcher and ASHA early stopping.

``sweep`` runs and resumes sweeps; ``space`` and ``params`` turn the YAML search spaces into Optuna and
Tune; ``settings`` is a sweep's stored record; ``console`` its one-line progress; ``asha`` the scheduler;
``trial`` a Tune trial (in process or as a Ray Train run of ``ray_train``); ``watchdog`` ends a stalled
trial; ``final`` trains a best config. The only part that imports Ray; it reaches MLflow through
``fgi.tracking``.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """Names of the old ``fgi.search`` module (fgi 0.1), now in ``fgi.search.sweep``: pickles keep loading."""
    import importlib

    sweep = importlib.import_module("fgi.search.sweep")
    if name in sweep.__all__:
        return getattr(sweep, name)
    raise AttributeError(f"module 'fgi.search' has no attribute {name!r}")
