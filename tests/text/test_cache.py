from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import fgi.text.cache as text_cache
from fgi.config import TextConfig
from fgi.datasets import dataset_context
from fgi.text.cache import (
    TextCacheError,
    build_text_cache,
    cache_ready,
    load_descriptions,
    open_embeddings,
    read_descriptions,
)
from fgi.text.templates import TemplateError, template_names

SYNTHETIC, KVASIR = dataset_context("synthetic"), dataset_context("kvasir")

TWO = ["clinical", "location_size"]


def _forbid_models(monkeypatch):
    """Any attempt to load the encoder or build a describer fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError("a cached rerun must not load a model")

    monkeypatch.setattr(text_cache, "TextEncoder", boom)
    monkeypatch.setattr(text_cache, "make_describer", boom)


def test_first_build_misses_rerun_hits_and_recomputes_nothing(tmp_path, gaze_items, minilm, monkeypatch):
    items = gaze_items(8)
    first = build_text_cache(tmp_path, items, TextConfig(), SYNTHETIC, progress=False, encoder=minilm)
    names = template_names()
    assert first["templates"] == names and first["items"] == 8 and first["dim"] == 384
    assert first["descriptions_computed"] == 8 * len(names)
    assert first["embeddings_computed"] == sum(first["unique_descriptions"].values()) > 0
    json.dumps(first)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "embeddings").rglob("*") if p.is_file()}
    desc_before = (tmp_path / "descriptions.jsonl").read_bytes()

    _forbid_models(monkeypatch)
    again = build_text_cache(tmp_path, items, TextConfig(), SYNTHETIC, progress=False)
    assert again["descriptions_computed"] == 0 and again["embeddings_computed"] == 0
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "embeddings").rglob("*") if p.is_file()}
    assert after == before and (tmp_path / "descriptions.jsonl").read_bytes() == desc_before


def test_new_items_compute_only_what_is_missing(tmp_path, gaze_items, minilm):
    items = gaze_items(10)
    build_text_cache(tmp_path, items[:6], TextConfig(), SYNTHETIC, templates=TWO, progress=False, encoder=minilm)
    table6 = open_embeddings(tmp_path, "clinical", TextConfig())
    more = build_text_cache(tmp_path, items, TextConfig(), SYNTHETIC, templates=TWO, progress=False, encoder=minilm)
    assert more["descriptions_computed"] == 4 * len(TWO)
    table10 = open_embeddings(tmp_path, "clinical", TextConfig())
    assert len(table6) == 6 and len(table10) == 10
    for item in items[:6]:
        assert torch.equal(table6.pooled(item.id), table10.pooled(item.id))
    records = read_descriptions(tmp_path / "descriptions.jsonl")
    keys = [(r["id"], r["template"], r["describer"], r["model"]) for r in records]
    assert len(keys) == len(set(keys)) == 10 * len(TWO)


def test_lookups_match_the_encoder_in_fp16(tmp_path, gaze_items, minilm):
    items = gaze_items(4)
    build_text_cache(tmp_path, items, TextConfig(), KVASIR, templates=["dataset_aware"], progress=False, encoder=minilm)
    texts = load_descriptions(tmp_path, "dataset_aware", TextConfig())
    assert all("polyp" in t for t in texts.values())
    direct = minilm.encode([texts[i.id] for i in items])
    table = open_embeddings(tmp_path, "dataset_aware", TextConfig(max_tokens=8))
    assert table.dim == 384
    for k, item in enumerate(items):
        pooled = table.pooled(item.id)
        assert pooled.dtype == torch.float32 and pooled.shape == (384,)
        assert torch.allclose(pooled, direct.pooled[k], atol=2e-3)
        tokens, mask = table.tokens(item.id)
        assert tokens.shape == (8, 384) and mask.shape == (8,) and mask.dtype == torch.bool
        assert mask.all()  # descriptions are longer than 8 tokens: truncated
        assert torch.allclose(tokens, direct.tokens[k][:8], atol=2e-2)
    long = open_embeddings(tmp_path, "dataset_aware", TextConfig(max_tokens=128))
    tokens, mask = long.tokens(items[0].id)
    n = direct.tokens[0].shape[0]
    assert mask.sum() == n and not mask[n:].any() and tokens[n:].abs().sum() == 0
    batch, bmask = long.tokens_batch([i.id for i in items])
    assert batch.shape == (4, 128, 384) and bmask.shape == (4, 128)
    assert long.pooled_batch([i.id for i in items]).shape == (4, 384)
    stored = list((tmp_path / "embeddings" / "dataset_aware").glob("*.safetensors"))
    from safetensors import safe_open

    with safe_open(str(stored[0]), framework="pt") as fh:
        assert fh.get_tensor("pooled").dtype == torch.float16


def test_errors_name_template_cache_dir_and_command(tmp_path, gaze_items, minilm):
    with pytest.raises(TemplateError, match="structured"):
        open_embeddings(tmp_path, "nope", TextConfig())
    with pytest.raises(TextCacheError) as err:
        open_embeddings(tmp_path, "clinical", TextConfig())
    assert "'clinical'" in str(err.value) and str(tmp_path) in str(err.value) and "fgi prepare" in str(err.value)
    items = gaze_items(2)
    build_text_cache(tmp_path, items, TextConfig(), SYNTHETIC, templates=["clinical"], progress=False, encoder=minilm)
    with pytest.raises(TextCacheError, match="'morphology'.*fgi prepare"):
        open_embeddings(tmp_path, "morphology", TextConfig())
    with pytest.raises(KeyError, match="unseen.*fgi prepare"):
        open_embeddings(tmp_path, "clinical", TextConfig()).pooled("unseen")
    assert cache_ready(tmp_path, ["clinical"], TextConfig())
    assert not cache_ready(tmp_path, ["clinical", "morphology"], TextConfig())


_BUILDER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from tests.text.conftest import gaze_region
    from fgi.config import TextConfig
    from tests.synthetic import make_split
    from fgi.datasets import dataset_context
    from fgi.text.cache import build_text_cache
    from fgi.text.items import TextItem
    items = [TextItem(s.id, s.image, gaze_region(s.fixations, 48, 48)) for s in make_split("train", int(sys.argv[2]), 48, 0)]
    m = build_text_cache(Path(sys.argv[1]), items, TextConfig(), dataset_context("synthetic"), templates=["clinical", "geometry"], progress=False)
    print(json.dumps(m))
""")


@pytest.mark.slow
def test_processes_starting_at_once_build_once(tmp_path):
    script = tmp_path / "builder.py"
    script.write_text(_BUILDER)
    cache = tmp_path / "cache"
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(cache), "5", root], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    manifests = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    computed = sorted(m["descriptions_computed"] for m in manifests)
    assert computed == [0, 0, 10]
    assert sorted(m["embeddings_computed"] for m in manifests)[:2] == [0, 0]
    records = read_descriptions(cache / "descriptions.jsonl")
    assert len(records) == 10
    assert len(open_embeddings(cache, "geometry", TextConfig())) == 5
    assert not list(cache.rglob("*.tmp"))


def test_readers_see_whole_tables_while_the_cache_grows(tmp_path, gaze_items, minilm):
    items = gaze_items(12)
    build_text_cache(tmp_path, items[:4], TextConfig(), SYNTHETIC, templates=["structured"], progress=False,
                     encoder=minilm)
    base = open_embeddings(tmp_path, "structured", TextConfig(mode="tokens"))
    expected = {i.id: (base.pooled(i.id), base.tokens(i.id)[0]) for i in items[:4]}
    errors: list[BaseException] = []
    sizes: list[int] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                table = open_embeddings(tmp_path, "structured", TextConfig(mode="tokens"))
                sizes.append(len(table))
                for image_id, (pooled, tokens) in expected.items():
                    assert torch.equal(table.pooled(image_id), pooled)
                    assert torch.equal(table.tokens(image_id)[0], tokens)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for stop in (6, 8, 10, 12):
            build_text_cache(tmp_path, items[:stop], TextConfig(), SYNTHETIC, templates=["structured"],
                             progress=False, encoder=minilm)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[0]
    assert sizes and min(sizes) >= 4 and len(open_embeddings(tmp_path, "structured", TextConfig())) == 12


def test_read_descriptions_names_a_corrupt_line(tmp_path):
    path = tmp_path / "descriptions.jsonl"
    path.write_text('{"id": "a", "template": "t", "describer": "m", "model": "x", "text": "ok"}\n{broken\n')
    with pytest.raises(ValueError, match=r"descriptions.jsonl:2"):
        read_descriptions(path)
