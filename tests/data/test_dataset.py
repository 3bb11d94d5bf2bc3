from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fgi.config import override
from fgi.data.cache import ITEMS_DIR, load_manifest
from fgi.data.dataset import build_datasets, ensure_prepared
from fgi.data.errors import DataError
from fgi.data.prepare import prepare_cache
from tests.data.conftest import config


def _syn(tmp_path, text="none", **data):
    cfg = config(synthetic_train=4, synthetic_val=2, synthetic_test=2, cache_dir=str(tmp_path / "cache"), **data)
    return override(cfg, {"text.mode": text})


def test_missing_cache_names_dir_and_command(tmp_path):
    cfg = _syn(tmp_path)
    with pytest.raises(DataError, match=r"cache/manifest.json: no prepared cache; run: fgi prepare --dataset synthetic"):
        build_datasets(cfg, seed=0)


def test_batch_contract_and_levels(tmp_path):
    cfg = _syn(tmp_path)
    cache = ensure_prepared(cfg, workers=1)
    ds = build_datasets(cfg, seed=0)
    assert set(ds) == {"train", "val", "test"} and len(ds["train"]) == 4
    batch = next(iter(DataLoader(ds["val"], batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    for k in ("tight", "loose", "mask"):
        assert batch[k].shape == (2, 1, 32, 32) and batch[k].dtype == torch.bool
    assert "text" not in batch and batch["id"] == ["syn-val-00000", "syn-val-00001"]
    assert bool((batch["tight"] <= batch["loose"]).all())  # tight is inside loose
    # val is not augmented: the levels are the stored soft CRF map thresholded
    m = load_manifest(cache)
    with np.load(cache / ITEMS_DIR / m["items"]["syn-val-00000"]["file"]) as z:
        crf = z["crf"].astype(np.float32)
        img = z["image"]
    assert torch.equal(batch["tight"][0, 0], torch.from_numpy(crf >= 0.5))
    assert torch.equal(batch["loose"][0, 0], torch.from_numpy(crf >= 0.3))
    mean, std = np.array(m["normalization"]["mean"]), np.array(m["normalization"]["std"])
    expect = (img[5, 7] / 255.0 - mean) / std
    assert np.allclose(batch["image"][0, :, 5, 7].numpy(), expect, atol=1e-5)
    # levels change at load time without preparing again
    cfg2 = override(cfg, {"data.tight_level": 0.7, "data.level_source": "heatmap"})
    assert ensure_prepared(cfg2) == cache and load_manifest(cache)["seconds"] == m["seconds"]
    s = build_datasets(cfg2, seed=0)["val"][0]
    with np.load(cache / ITEMS_DIR / m["items"]["syn-val-00000"]["file"]) as z:
        assert torch.equal(s["tight"][0], torch.from_numpy(z["heatmap"].astype(np.float32) >= 0.7))


def test_augmentation_is_seeded_and_joint(tmp_path):
    cfg = override(_syn(tmp_path), {"augment.affine": 1.0, "augment.rotate_limit": 30.0})
    ensure_prepared(cfg, workers=1)
    a = [build_datasets(cfg, seed=5)["train"][i] for i in range(4)]
    b = [build_datasets(cfg, seed=5)["train"][i] for i in range(4)]
    c = [build_datasets(cfg, seed=6)["train"][i] for i in range(4)]
    assert all(torch.equal(x["image"], y["image"]) and torch.equal(x["tight"], y["tight"]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x["image"], y["image"]) for x, y in zip(a, c, strict=True))
    ds = build_datasets(cfg, seed=5)["train"]
    first = ds[0]["image"]
    assert not torch.equal(first, ds[0]["image"])  # a second visit draws a new augmentation
    ds.set_epoch(1)
    e1 = ds[0]["image"]
    ds2 = build_datasets(cfg, seed=5)["train"]
    ds2.set_epoch(1)
    assert torch.equal(e1, ds2[0]["image"])
    # the mask is warped with the image: tight labels stay mostly inside the warped lesion
    for s in a:
        t, m = s["tight"], s["mask"]
        if t.any():
            assert (t & m).sum() / t.sum() > 0.5


def test_workers_give_reproducible_batches(tmp_path):
    cfg = _syn(tmp_path)
    ensure_prepared(cfg, workers=1)

    def run():
        ds = build_datasets(cfg, seed=3)["train"]
        dl = DataLoader(ds, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(0))
        return torch.cat([b["image"] for b in dl])

    assert torch.equal(run(), run())


def test_split_without_masks_omits_the_key(isic, tmp_path):
    import shutil

    shutil.rmtree(isic / "ISIC2018_Task1_Validation_GroundTruth")
    cfg = config(dataset="isic", root=str(isic), cache_dir=str(tmp_path / "c"))
    cfg = override(cfg, {"text.mode": "none"})
    prepare_cache(cfg, None, workers=1, progress=False, text=False)
    ds = build_datasets(cfg, seed=0)
    assert "mask" not in ds["val"][0] and "tight" not in ds["val"][0]
    assert {"mask", "tight", "loose"} <= set(ds["train"][0])


def test_nci_single_channel(nci, tmp_path):
    root, csv_path = nci
    cfg = override(config(dataset="nci-isbi", root=str(root), fixations=str(csv_path), in_channels=1,
                          cache_dir=str(tmp_path / "c")), {"text.mode": "none"})
    ensure_prepared(cfg, workers=1)
    s = build_datasets(cfg, seed=0)["train"][0]
    assert s["image"].shape == (1, 32, 32)


def test_stale_cache_is_refused_then_refreshed(tmp_path):
    cfg = _syn(tmp_path)
    ensure_prepared(cfg, workers=1)
    changed = override(cfg, {"gaze.canvas": 96})
    with pytest.raises(DataError, match=r"prepared with another data/gaze/CRF config; run: fgi prepare"):
        build_datasets(changed, seed=0)
    ensure_prepared(changed, workers=1)
    assert len(build_datasets(changed, seed=0)["train"]) == 4
