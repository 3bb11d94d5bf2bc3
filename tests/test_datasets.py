from __future__ import annotations

import pytest

from fgi.config import ConfigError, from_dict
from fgi.data.sources import LAYOUTS
from fgi.datasets import (
    DATASET_NAMES,
    DATASETS,
    FILE_DATASETS,
    FILE_LAYOUTS,
    dataset_context,
    get_dataset,
    validate_names,
)
from fgi.run.evaluation import raw_folders
from fgi.text.templates import get_template


def test_every_dataset_has_an_adapter_and_a_full_context():
    assert set(DATASET_NAMES) == {"synthetic", "kvasir", "isic", "nci-isbi"}
    for name, info in DATASETS.items():
        assert info.name == name and info.layout in LAYOUTS and info.channels in (1, 3)
        assert get_template("dataset_aware").prompt(dataset_context(name))  # every word a template may use
    assert dataset_context("kvasir") == {"lesion": "polyp", "modality": "colonoscopy", "organ": "colon"}


def test_case_grouping():
    assert get_dataset("nci-isbi").group_of("Prostate3T-01-0021_17") == "Prostate3T-01-0021"
    assert get_dataset("kvasir").group_of("cju0qkwl35piu0993l0dewei2") == ""


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown dataset 'kvasr'; valid datasets are \['isic', 'kvasir', 'nci-isbi', 'synthetic'\]"):
        get_dataset("kvasr")
    with pytest.raises(ConfigError, match=r"^data.dataset: unknown dataset 'mri'; valid datasets are \["):
        validate_names("mri", "structured")
    with pytest.raises(ConfigError, match=r"^text.template: unknown prompt template 'clinicl'.*valid templates are \[.*'clinical'"):
        validate_names("kvasir", "clinicl")
    validate_names("nci-isbi", "clinical")


def test_a_config_with_an_unknown_name_fails_when_it_is_built():
    with pytest.raises(ConfigError, match=r"^data.dataset: unknown dataset 'kvasr'"):
        from_dict({"data": {"dataset": "kvasr"}})
    with pytest.raises(ConfigError, match=r"^text.template: unknown prompt template 'clinicl'"):
        from_dict({"text": {"template": "clinicl"}})
    assert from_dict({"data": {"dataset": "kvasir"}, "text": {"template": "clinical"}}).data.dataset == "kvasir"


def test_every_dataset_has_files_to_score(tmp_path):
    assert FILE_DATASETS == DATASET_NAMES
    for name in FILE_DATASETS:
        assert get_dataset(name).files in FILE_LAYOUTS and get_dataset(name).image_exts
    assert raw_folders("synthetic", tmp_path) == (tmp_path / "images", tmp_path / "masks", "")
    assert raw_folders("nci-isbi", tmp_path) == (tmp_path / "images", tmp_path / "masks", "")
    assert raw_folders("isic", tmp_path, "val") == (tmp_path / "ISIC2018_Task1-2_Validation_Input",
                                                    tmp_path / "ISIC2018_Task1_Validation_GroundTruth", "_segmentation")
    with pytest.raises(ConfigError, match="unknown dataset 'kvasr'"):
        raw_folders("kvasr", tmp_path)


def test_fixations_are_found_by_their_gazemedseg_name_beside_the_data(tmp_path):
    from fgi.datasets import find_fixations

    data = tmp_path / "kvasir-seg"
    data.mkdir()
    assert find_fixations("kvasir", data) is None
    (tmp_path / "gazemedseg").mkdir()
    release = tmp_path / "gazemedseg" / "kvasir_fixation.csv"
    release.write_text("x")
    assert find_fixations("kvasir", data) == release
    assert find_fixations("nci-isbi", data) is None  # another dataset's name does not match
    inside = data / "kvasir_fixation.csv"
    inside.write_text("x")
    assert find_fixations("kvasir", data) == inside  # the data folder itself comes first
    assert find_fixations("synthetic", data) is None and find_fixations("isic", data) is None
