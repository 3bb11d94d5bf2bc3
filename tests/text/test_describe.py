from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from fgi.config import ConfigError, TextConfig, field_spec
from fgi.datasets import dataset_context
from fgi.text.cache import build_text_cache, load_descriptions
from fgi.text.describe import DESCRIBERS, describer_model_id, make_describer
from fgi.text.items import DescriberError, TextItem
from fgi.text.morphology import MorphologyDescriber, measure_region
from fgi.text.templates import get_template
from tests.synthetic import make_split

from .conftest import gaze_region


def test_describers_never_see_ground_truth(tmp_path, minilm):
    # Structure: nothing on the way from an item to a description can carry a mask other than the region.
    assert [f.name for f in dataclasses.fields(TextItem)] == ["id", "image", "region"]
    assert list(inspect.signature(measure_region).parameters) == ["image", "region"]
    # Behaviour: cached descriptions follow the gaze pseudo-mask, and differ from what the ground truth gives.
    size = 64
    samples = make_split("train", 6, size, 0)
    items = [TextItem(s.id, s.image, gaze_region(s.fixations, size, size)) for s in samples]
    build_text_cache(tmp_path, items, TextConfig(), dataset_context("synthetic"), templates=["geometry"], progress=False,
                     encoder=minilm)
    cached = load_descriptions(tmp_path, "geometry", TextConfig())
    tpl, ctx = get_template("geometry"), dataset_context("synthetic")
    differs = 0
    for s, item in zip(samples, items, strict=True):
        from_gaze = tpl.render_text(measure_region(s.image, item.region), ctx)
        from_truth = tpl.render_text(measure_region(s.image, s.mask), ctx)
        assert cached[s.id] == from_gaze
        differs += from_gaze != from_truth
    assert differs == len(samples)


def test_predicted_mask_describes_an_inference_image(shapes):
    image = np.full((64, 64, 3), (120, 110, 100), np.uint8)
    predicted = shapes["disc"](64, 32, 32, 12)
    text = make_describer(TextConfig()).describe([(TextItem("infer-1", image, predicted),
                                                   get_template("morphology"))], dataset_context("isic"))
    assert text == ["round, smooth-bordered, homogeneous"]


def test_registry_and_vlm_path_errors(tmp_path):
    # the config accepts exactly the registered describers, and an unknown one lists them
    assert sorted(field_spec("text.describer")[1]["choices"]) == sorted(DESCRIBERS)
    with pytest.raises(ConfigError, match=r"\['morphology', 'vlm'\]"):
        TextConfig(describer="oracle")
    with pytest.raises(DescriberError, match="text.vlm_path"):
        make_describer(TextConfig(describer="vlm"))
    with pytest.raises(DescriberError, match="local model folder"):
        describer_model_id(TextConfig(describer="vlm", vlm_path=str(tmp_path / "missing")))
    assert describer_model_id(TextConfig()) == MorphologyDescriber.model_id
