from __future__ import annotations

from pathlib import Path

from fgi.paths import fgi_home, git_commit, staging_dir, storage_path


def test_fgi_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FGI_HOME", str(tmp_path / "h" / ".." / "home"))
    assert fgi_home() == tmp_path / "home"
    monkeypatch.delenv("FGI_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert fgi_home() == tmp_path / "user" / ".fgi"


def test_storage_path(monkeypatch, tmp_path):
    monkeypatch.setenv("FGI_HOME", str(tmp_path))
    assert storage_path(None) == storage_path("") == str(tmp_path / "ray_results")
    assert storage_path("s3://bucket/runs") == "s3://bucket/runs"
    monkeypatch.chdir(tmp_path)
    assert storage_path("rel/store") == str(tmp_path / "rel" / "store")


def test_staging_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert staging_dir(str(tmp_path / "store"), "t1") == str(tmp_path / "store" / "t1" / "staging")
    assert staging_dir("gs://b/x", "t1") == str(Path(tmp_path / "user") / ".cache" / "fgi" / "staging" / "t1")


def test_git_commit_falls_back_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("FGI_GIT_COMMIT", "abc123")
    assert git_commit() == "abc123"
    monkeypatch.delenv("FGI_GIT_COMMIT")
    assert git_commit() == "unknown"
