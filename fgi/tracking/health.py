"""Fail-fast checks of a tracking server before a command writes anything: it answers, and it can store artifacts.

A dead server, or one whose artifact root cannot be written (read-only, full, wrong permissions), would
otherwise fail a sweep minutes in: MLflow retries each HTTP 500 with growing delays (measured: 259 s, then a
traceback from the first artifact upload, with the sweep file and a RUNNING parent run left behind).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.utils.uri import get_uri_scheme

from fgi.fields import OptionError

SERVER_CHECK_TIMEOUT_S = 10.0  # a live tracking server answers its health check well within this


def check_server(uri: str, timeout_s: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """Fail fast when an ``http(s)`` tracking URI has no MLflow server behind it (other stores pass).

    Raises:
        OptionError: naming the URI and what the connection said, within ``timeout_s`` seconds.
    """
    import urllib.error
    import urllib.request

    if get_uri_scheme(uri) not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise OptionError("mlflow_uri", f"{uri}: no MLflow tracking server answers ({getattr(exc, 'reason', exc)}); "
                                        "start it (mlflow server ...) or give another tracking URI") from None
    if status >= 500 or status == 404:
        raise OptionError("mlflow_uri", f"{uri}: its health check gave HTTP {status}; is it an MLflow server?")


PROBE_RETRIES = "1"  # MLFLOW_HTTP_REQUEST_MAX_RETRIES during the probe: fail in seconds, not minutes


def check_artifacts(uri: str, experiment: str) -> None:
    """Fail fast when an ``http(s)`` tracking server cannot store the artifacts of ``experiment``.

    Writes one small file under the experiment's artifact location (created with the experiment when
    missing, as a sweep would) and deletes it again. Other stores pass: their artifacts are local files
    that the command's own writes check.

    Raises:
        OptionError: naming the URI, the artifact location and what the server answered.
    """
    if get_uri_scheme(uri) not in ("http", "https"):
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from fgi.tracking.runs import _client, experiment_id

    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = PROBE_RETRIES
    location = "?"
    try:
        location = _client(uri).get_experiment(experiment_id(uri, experiment)).artifact_location
        probe = f".fgi-write-check-{uuid.uuid4().hex}"
        with tempfile.TemporaryDirectory(prefix="fgi-probe-") as tmp:
            (Path(tmp) / probe).write_text("fgi checks that this server stores artifacts; safe to delete\n")
            repo = get_artifact_repository(location, tracking_uri=uri)
            repo.log_artifact(str(Path(tmp) / probe))
        try:
            repo.delete_artifacts(probe)
        except (MlflowException, NotImplementedError, OSError):
            pass  # the store refused the delete (a --no-serve-artifacts proxy, say); the 60-byte file stays
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise OptionError("mlflow_uri", f"{uri}: the server cannot store artifacts of experiment {experiment!r} "
                          f"under {location} ({first}); make its artifact root (mlflow server "
                          "--artifacts-destination) writable with free space, or give another tracking URI") from None
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved


__all__ = ["SERVER_CHECK_TIMEOUT_S", "check_artifacts", "check_server"]
