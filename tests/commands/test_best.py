"""``fgi best``: an experiment without a sweep's best config is one line on stderr and exit code 1."""

from __future__ import annotations

import pytest

from fgi.cli import main

pytestmark = pytest.mark.slow  # creates a local MLflow store


def test_unknown_experiment_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FGI_HOME", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["best", "--experiment", "fgi-none", "--mlflow-uri", uri, "--out", str(tmp_path / "b.yaml")]) == 1
    err = capsys.readouterr().err
    assert "--experiment: no experiment 'fgi-none'" in err and "Traceback" not in err
    assert not (tmp_path / "b.yaml").exists()
