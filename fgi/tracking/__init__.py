"""MLflow, and only here: a sweep is a parent run, a trial a nested child run, the final model a registry entry.

``runs`` holds the store, the parent run and the callbacks (the public API, re-exported here); ``trials``
reads and writes child runs; ``queue`` sends operations off the Tune loop and spools what it could not
send; ``registry`` logs, registers and fetches models; ``health`` checks a server answers and stores artifacts; ``staging`` verifies and copies checkpoints before upload; ``best`` finds a sweep's best trial.
Nothing here trains: the part imports only the root (config, paths, files, checkpoint, viz) and ``budgets``.
"""

from fgi.tracking import health, registry, runs
from fgi.tracking.health import *  # noqa: F403
from fgi.tracking.registry import *  # noqa: F403
from fgi.tracking.runs import *  # noqa: F403

__all__ = [*health.__all__, *runs.__all__, *registry.__all__]
