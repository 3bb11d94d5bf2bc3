"""``fgi.tracking.check_server``: a tracking URI with no MLflow server behind it fails fast, naming it."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from fgi.fields import OptionError
from fgi.tracking import check_server
from tests.servers import free_port


def test_a_dead_http_uri_fails_in_seconds_and_names_it():
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(OptionError, match="no MLflow tracking server answers") as info:
        check_server(dead, timeout_s=5)
    assert time.monotonic() - t0 < 5 and info.value.option == "mlflow_uri" and dead in str(info.value)


def test_a_server_that_is_not_mlflow_is_named(tmp_path):
    # a plain file server: GET /health is a 404
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(OptionError, match="health check gave HTTP 404; is it an MLflow server"):
            check_server(f"http://127.0.0.1:{server.server_address[1]}")
        (tmp_path / "health").write_text("OK")
        check_server(f"http://127.0.0.1:{server.server_address[1]}")  # answers: passes
    finally:
        server.shutdown()
        server.server_close()


def test_database_and_file_stores_are_not_probed(tmp_path):
    check_server(f"sqlite:///{tmp_path / 'nothing-yet.db'}")
    assert not (tmp_path / "nothing-yet.db").exists()
