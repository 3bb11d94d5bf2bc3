"""What a failing tracking server most likely has, told from the client's side.

An artifact store that fills up (or turns read-only) in the middle of a sweep answers each upload with HTTP
500, and the client sees only "too many 500 error responses": the server's own log holds the ENOSPC. A server
that answers that way is alive, so a sweep that waits for it to come back waits in vain; one that does not
answer at all (a connection error) may come back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from fgi.files import folder_bytes

# how MLflow's client words an HTTP 500 after its own retries (artifact uploads), or a single one (REST calls)
REFUSAL_SIGNS = ("500 error responses", "status code 500", "Response code 500")

def is_refusal(exc: BaseException | None) -> bool:
    """A server that answers but fails the request (HTTP 5xx): alive, so waiting for it to come back is no cure."""
    if not isinstance(exc, MlflowException):
        return False
    text = str(exc)
    return any(sign in text for sign in REFUSAL_SIGNS)


def explain_failure(item: Mapping[str, Any], exc: BaseException) -> str | None:
    """The line a sweep prints when an upload first fails: a refused artifact names the store's likely faults."""
    if item["op"] not in ("files", "text") or not is_refusal(exc):
        return None
    what = item["args"].get("local") or item["args"].get("path", "")
    local = Path(str(what))
    size = folder_bytes(local) if local.is_dir() else local.stat().st_size if local.is_file() else 0
    return (f"fgi tracking: the MLflow server refuses to store {what} ({size / 1e6:.1f} MB) with HTTP 500; its "
            "artifact store (the server's --artifacts-destination or --default-artifact-root) is likely full or "
            "unwritable, and the server's log says which. The sweep trains on; the upload is retried, then "
            "spooled for --resume")


__all__ = ["REFUSAL_SIGNS", "explain_failure", "is_refusal"]
