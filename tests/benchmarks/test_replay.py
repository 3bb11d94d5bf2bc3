"""The committed best config of protocol v2's arm (e) is what its sweep's seeded sampler proposes."""

from __future__ import annotations

from tests.benchmarks.scripts import ROOT, load_script

replay = load_script("replay_e_sweep")


def _without_commit_line(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("# git commit ")]


def test_the_replayed_sweep_rebuilds_the_committed_kvasir_config(d_fgi_config, tmp_path, capsys):
    # a change to the search space, the sampler's settings or the protocol's base config breaks this: the
    # committed file would no longer be the config the recorded sweep chose
    out = tmp_path / "kvasir.yaml"
    assert replay.main(["--config", str(d_fgi_config), "--out", str(out)]) == 0
    assert "8 finishing orders reproduce all 7 recorded trials; they agree on b22e9403" in capsys.readouterr().out
    committed = (ROOT / "benchmarks" / "results" / "e_sweep_kvasir.yaml").read_text()
    assert _without_commit_line(out.read_text()) == _without_commit_line(committed)


def test_a_trial_outside_the_record_is_no_finishing_order(d_fgi_config, tmp_path, capsys, monkeypatch):
    # drop a searched trial from the record: no order can propose all the others and stay inside the record
    monkeypatch.setattr(replay, "RECORDED", {k: v for k, v in replay.RECORDED.items() if v[0] != "d5b91bfd"})
    out = tmp_path / "kvasir.yaml"
    assert replay.main(["--config", str(d_fgi_config), "--out", str(out)]) == 1
    assert "no finishing order reproduces the recorded trials" in capsys.readouterr().err
    assert not out.exists()
