from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import fgi.text
from fgi.datasets import DATASETS, dataset_context
from fgi.text.morphology import measure_region
from fgi.text.templates import (
    CONTEXT_KEYS,
    LESION_ATTRIBUTES,
    TemplateError,
    check_context,
    get_template,
    load_templates,
    parse_templates,
    template_names,
)


def _valid() -> dict:
    return {"templates": {"t": {"vlm_prompt": "Describe the {lesion}.", "render": "{shape} at {location}"}}}


def test_shipped_set_has_the_required_distinct_templates():
    names = template_names()
    assert len(names) >= 5
    for required in ("structured", "clinical", "morphology", "location_size", "dataset_aware"):
        assert required in names
    tset = load_templates()
    assert len({tset.get(n).render for n in names}) == len(names)
    assert len({tset.get(n).vlm_prompt for n in names}) == len(names)


def test_templates_file_is_package_data():
    # found inside the installed package (importlib.resources), not through the source checkout's layout
    assert load_templates().path == (Path(fgi.text.__file__).parent / "templates.yaml").resolve()


def test_every_template_renders_for_every_dataset(shapes):
    import numpy as np

    image = np.full((64, 64, 3), 100, np.uint8)
    attrs = measure_region(image, shapes["disc"](64, 20, 20, 8))
    tset = load_templates()
    seen = set()
    for name in tset.names:
        for ds in DATASETS:
            text = tset.get(name).render_text(attrs, dataset_context(ds))
            prompt = tset.get(name).prompt(dataset_context(ds))
            assert text and "{" not in text and "\n" not in text and "  " not in text
            assert prompt and "{" not in prompt
            seen.add(text)
    assert len(seen) >= len(tset.names)
    kvasir = tset.get("dataset_aware").render_text(attrs, dataset_context("kvasir"))
    assert "polyp" in kvasir and "colonoscopy" in kvasir
    assert "T2-weighted MRI" in tset.get("dataset_aware").render_text(attrs, dataset_context("nci-isbi"))
    assert "dermoscopy" in tset.get("dataset_aware").render_text(attrs, dataset_context("isic"))
    assert "upper left" in tset.get("location_size").render_text(attrs, dataset_context("kvasir"))


def test_unknown_template_name_lists_the_valid_ones():
    with pytest.raises(TemplateError) as err:
        get_template("no-such-template")
    for name in template_names():
        assert name in str(err.value)


def test_context_must_hold_exactly_the_context_keys():
    assert check_context(dataset_context("kvasir")) == {"lesion": "polyp", "modality": "colonoscopy", "organ": "colon"}
    with pytest.raises(TemplateError, match="organ"):
        check_context({"lesion": "polyp", "modality": "colonoscopy"})
    with pytest.raises(TemplateError, match="non-empty"):
        check_context({"lesion": "polyp", "modality": "", "organ": "colon"})


def test_unknown_attribute_in_render_names_template_and_attribute(tmp_path):
    data = _valid()
    data["templates"]["broken"] = {"vlm_prompt": "Describe.", "render": "{shape} with {hue_angle:.1f}"}
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TemplateError) as err:
        load_templates(path)
    msg = str(err.value)
    assert "'broken'" in msg and "hue_angle" in msg and str(path) in msg


def test_vlm_prompt_may_only_use_dataset_context():
    data = _valid()
    data["templates"]["t"]["vlm_prompt"] = "Is the lesion {shape}?"
    with pytest.raises(TemplateError, match=r"'t' vlm_prompt refers to unknown attribute \{shape\}"):
        parse_templates(data, "x.yaml")


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["templates"].__setitem__("t", {"render": "{shape}"}), "vlm_prompt"),
    (lambda d: d["templates"]["t"].__setitem__("colour", "x"), "colour"),
    (lambda d: d.__setitem__("templates", {}), "non-empty"),
    (lambda d: d.__setitem__("datasets", {}), "dataset registry"),
    (lambda d: d["templates"]["t"].__setitem__("render", "{shape"), "format string"),
    (lambda d: d["templates"]["t"].__setitem__("render", "{} positional"), "unknown attribute"),
    (lambda d: d.__setitem__("extra", 1), "extra"),
])
def test_malformed_files_fail_with_the_field_named(mutate, needle):
    data = _valid()
    mutate(data)
    with pytest.raises(TemplateError, match=needle):
        parse_templates(data, "x.yaml")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(TemplateError, match="not found"):
        load_templates(tmp_path / "nope.yaml")


def test_attribute_vocabulary_matches_the_describer(shapes):
    import numpy as np

    attrs = measure_region(np.zeros((32, 32, 3), np.uint8), shapes["disc"](32, 16, 16, 6))
    assert set(attrs) == set(LESION_ATTRIBUTES)
    assert not set(attrs) & set(CONTEXT_KEYS)
