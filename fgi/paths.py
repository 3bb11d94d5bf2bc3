"""Where fgi keeps things: ``$FGI_HOME``, run folders, and the git commit a run was made from.

``FGI_HOME`` defaults to ``~/.fgi``. It holds the default MLflow store, the Ray results and the caches.
Paths are absolute because ``ray job submit`` runs the driver in a temporary copy of the working
directory, where a relative path would point somewhere else on every submission.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

RAY_RESULTS = "ray_results"  # default storage folder of Tune and Train runs under $FGI_HOME
GIT_TIMEOUT_S = 10  # a hung git (network file system) must not stall a run's start
GIT_COMMIT_ENV = "FGI_GIT_COMMIT"  # the commit when the code runs outside a checkout


def fgi_home() -> Path:
    """``$FGI_HOME`` or ``~/.fgi``, absolute: the default home of the MLflow store, Ray results and caches."""
    return Path(os.environ.get("FGI_HOME") or Path.home() / ".fgi").expanduser().resolve()


def storage_path(value: str | None = None) -> str:
    """Storage of Ray runs: ``value`` (a URI as given, a local path made absolute) or ``$FGI_HOME/ray_results``.

    Args:
        value: a local folder, a URI such as ``s3://bucket/prefix``, or None/empty for the default.
    """
    if not value:
        return str(fgi_home() / RAY_RESULTS)
    return value if "://" in value else str(Path(value).expanduser().resolve())


def staging_dir(storage: str, name: str) -> str:
    """Folder where rank 0 writes checkpoints of run ``name`` before Ray persists them.

    Inside the run's own folder for local storage, so that the copy Ray makes stays on one disk; under
    ``~/.cache/fgi/staging`` for URI storage.

    Args:
        storage: the run's storage path (local folder or URI).
        name: the run name.
    """
    if "://" in storage:
        return str(Path.home() / ".cache" / "fgi" / "staging" / name)
    return str(Path(storage).expanduser().resolve() / name / "staging")


def git_commit() -> str:
    """The project's git commit, else ``$FGI_GIT_COMMIT``, else "unknown" (e.g. a ``ray job`` working-dir copy)."""
    root = Path(__file__).resolve().parents[1]
    fallback = os.environ.get(GIT_COMMIT_ENV, "unknown")
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return fallback
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else fallback


__all__ = ["fgi_home", "git_commit", "staging_dir", "storage_path"]
