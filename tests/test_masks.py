"""Masks in the manifest: `load_mask`, `read_mask`, `polygons_mask`; descriptor columns."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from eutirads.data.manifest import (CORE_COLUMNS, DESCRIPTOR_COLUMNS, clean_descriptors,
                                    load_mask, mask_path, row_descriptors)
from eutirads.data.masks import polygons_mask, read_mask, save_mask
from eutirads.errors import InputError, ManifestError


def _dataset(tmp_path, mask: np.ndarray | None, size=(40, 30)):
    Image.new("L", size, 90).save(tmp_path / "a.png")
    row = {"path": "a.png", "mask": ""}
    if mask is not None:
        save_mask(mask, tmp_path / "masks" / "a.png")
        row["mask"] = "masks/a.png"
    return row


def test_the_manifest_has_mask_and_descriptor_columns():
    assert "mask" in CORE_COLUMNS
    assert DESCRIPTOR_COLUMNS == ("composition", "echogenicity", "shape", "margins",
                                  "echogenic_foci")
    assert set(DESCRIPTOR_COLUMNS) <= set(CORE_COLUMNS)


def test_a_saved_mask_is_0_or_255_and_loads_back_as_bool(tmp_path):
    mask = np.zeros((30, 40), bool)
    mask[5:10, 8:20] = True
    row = _dataset(tmp_path, mask)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "masks" / "a.png")))) == {0, 255}
    loaded = load_mask(tmp_path, row)
    assert loaded.dtype == bool and np.array_equal(loaded, mask)
    assert np.array_equal(load_mask(tmp_path, row, image_size=(40, 30)), mask)


def test_an_empty_mask_column_is_unknown_and_an_all_zero_mask_is_no_nodule(tmp_path):
    row = _dataset(tmp_path, None)
    assert load_mask(tmp_path, row) is None and mask_path(tmp_path, row) is None
    row = _dataset(tmp_path, np.zeros((30, 40), bool))
    assert load_mask(tmp_path, row).sum() == 0


def test_a_0_1_label_map_reads_1_as_nodule(tmp_path):
    labels = np.zeros((30, 40), np.uint8)
    labels[2:4, 2:4] = 1
    Image.fromarray(labels).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").sum() == 4


def test_a_mask_of_another_size_is_one_line_naming_both_files(tmp_path):
    row = _dataset(tmp_path, np.zeros((31, 40), bool))
    with pytest.raises(InputError) as error:
        load_mask(tmp_path, row)
    message = str(error.value)
    assert "\n" not in message and "masks/a.png is 40x31" in message
    assert "its image a.png is 40x30" in message


def test_an_all_white_or_broken_mask_or_one_leaving_the_dataset_is_refused(tmp_path):
    row = _dataset(tmp_path, np.ones((30, 40), bool))
    with pytest.raises(InputError, match="all white"):
        load_mask(tmp_path, row)
    (tmp_path / "masks" / "a.png").write_bytes(b"junk")
    with pytest.raises(InputError, match="masks/a.png: not an image"):
        load_mask(tmp_path, row)
    with pytest.raises(ManifestError, match="leaves the dataset folder"):
        load_mask(tmp_path, {"path": "a.png", "mask": "../x.png"})
    with pytest.raises(InputError, match="not found"):
        load_mask(tmp_path, {"path": "a.png", "mask": "masks/none.png"})


def test_polygons_are_filled_and_joined_into_one_mask():
    mask = polygons_mask([[(2, 2), (10, 2), (10, 8), (2, 8)], [(20, 20), (25, 20), (25, 25)],
                          [(1, 1), (3, 3)]], 30, 28)
    assert mask.shape == (28, 30)
    assert mask[5, 5] and mask[21, 24] and not mask[15, 15]
    assert mask[2:9, 2:11].all()


def test_a_descriptor_outside_the_vocabulary_is_one_warning_and_unknown():
    lines: list[str] = []
    rows = [{"path": "a.png", "composition": "Solid", "echogenicity": "grey",
             "shape": "", "margins": "smooth", "echogenic_foci": "none"}]
    assert clean_descriptors(rows, dataset="D", on_problem=lines.append) == 1
    assert rows[0]["composition"] == "solid" and rows[0]["echogenicity"] == ""
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("warning: D/manifest.csv row 2 (a.png): column echogenicity")
    assert lines[0].endswith("kept as unknown")
    assert row_descriptors({"path": "b.png"}) == dict.fromkeys(DESCRIPTOR_COLUMNS, "")
