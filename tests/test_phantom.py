"""The ultrasound phantom: labels, features, geometry, the scanner frame, determinism, CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eutirads.categories import NoduleFeatures, classify
from eutirads.cli import main
from eutirads.data.manifest import CORE_COLUMNS, read_manifest
from eutirads.errors import InputError
from eutirads.imageio import load_gray, load_rgb
from eutirads.phantom import FEATURE_COLUMNS, contact_sheet, generate_dataset, render_example
from eutirads.phantom.render import render_bmode
from eutirads.phantom.scene import (NATURAL_PREVALENCE, sample_case, sample_features,
                                    sample_label, sample_view)
from eutirads.region import find_image_area


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "p"
    generate_dataset(out, n=10, seed=5, progress=False, workers=1)
    return out


def _features(row: dict[str, str]) -> NoduleFeatures:
    if row["label"] == "1":
        return NoduleFeatures(nodule=False)
    return NoduleFeatures(**{column: row[column] for column in FEATURE_COLUMNS})


def test_the_same_seed_gives_byte_identical_files_serial_or_parallel(tmp_path, small_dataset):
    again = tmp_path / "again"
    generate_dataset(again, n=10, seed=5, progress=False, workers=2)
    files = sorted(p.relative_to(small_dataset) for p in small_dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for file in files:
        assert (small_dataset / file).read_bytes() == (again / file).read_bytes(), file


def test_another_seed_gives_other_images():
    assert not np.array_equal(render_example(1, 3).screen, render_example(2, 3).screen)


def test_every_category_appears_and_each_label_is_classify_of_the_drawn_features(small_dataset):
    rows = read_manifest(small_dataset)
    assert Counter(row["label"] for row in rows) == {str(k): 2 for k in range(1, 6)}
    for row in rows:
        assert classify(_features(row)) == int(row["label"])
        assert row["path"].split("/")[0] == row["label"]  # class folders
        assert (small_dataset / row["path"]).is_file()


def test_the_manifest_has_the_core_columns_the_features_and_phantom_as_source(small_dataset):
    header = (small_dataset / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert set(FEATURE_COLUMNS) <= set(header)
    rows = read_manifest(small_dataset)
    assert {row["source"] for row in rows} == {"phantom"}
    assert len({row["patient_id"] for row in rows}) == len(rows)
    assert all(row["split"] == "" for row in rows)


def test_sampled_features_always_match_their_label_and_cover_every_feature_value():
    rng = np.random.default_rng(0)
    seen: dict[str, set[str]] = {column: set() for column in FEATURE_COLUMNS}
    for label in range(1, 6):
        for _ in range(300):
            features = sample_features(rng, label)
            assert classify(features) == label
            if features.nodule:
                for column in FEATURE_COLUMNS:
                    seen[column].add(getattr(features, column))
    assert seen["composition"] == {"cystic", "spongiform", "solid", "mixed"}
    assert seen["echogenicity"] == {"anechoic", "hyperechoic", "isoechoic",
                                    "mildly_hypoechoic", "markedly_hypoechoic"}
    assert seen["shape"] == {"oval", "non_oval", "taller_than_wide"}
    assert seen["margins"] == {"smooth", "irregular"}
    assert seen["echogenic_foci"] == {"none", "macrocalcifications", "microcalcifications"}


def test_natural_balance_follows_the_prevalence_and_equal_balance_cycles_classes():
    rng = np.random.default_rng(1)
    counts = Counter(sample_label(rng, i, "natural") for i in range(4000))
    for label, share in NATURAL_PREVALENCE.items():
        assert abs(counts[label] / 4000 - share) < 0.03
    assert [sample_label(rng, i, "equal") for i in range(7)] == [1, 2, 3, 4, 5, 1, 2]


def test_echogenicity_is_drawn_relative_to_thyroid_and_strap_muscle():
    rng = np.random.default_rng(2)
    for _ in range(200):
        case = sample_case(rng, 4)  # mildly hypoechoic: between muscle and thyroid
        assert case.anatomy.muscle_db + 2 < case.nodule.level_db < -2
        marked = sample_case(rng, 5)
        if marked.features.echogenicity == "markedly_hypoechoic":
            assert marked.nodule.level_db < marked.anatomy.muscle_db - 2


def _mean_in_nodule(case, level_db: float) -> float:
    view = sample_view(np.random.default_rng(3), case)
    nodule = replace(case.nodule, level_db=level_db, halo=0.0, texture_db=0.5)
    rendered = render_bmode(replace(case, nodule=nodule), view, 300, 392,
                            np.random.default_rng(4))
    return float(rendered.pixels[rendered.nodule_mask].mean())


def test_darker_echo_levels_render_darker_nodules():
    case = sample_case(np.random.default_rng(7), 3)
    muscle = case.anatomy.muscle_db
    hyper, iso, mild, marked = (_mean_in_nodule(case, level)
                                for level in (6.0, 0.0, muscle / 2, muscle - 5))
    assert hyper > iso + 8 > mild + 16 > marked + 24


def test_microcalcifications_render_as_several_bright_foci():
    rng = np.random.default_rng(11)
    while True:
        case = sample_case(rng, 5)
        if case.features.echogenic_foci == "microcalcifications":
            break
    view = sample_view(np.random.default_rng(3), case)
    with_foci = render_bmode(case, view, 300, 392, np.random.default_rng(4))
    without = render_bmode(replace(case, nodule=replace(case.nodule, foci=())), view, 300, 392,
                           np.random.default_rng(4))
    bright = (with_foci.pixels >= 235) & with_foci.nodule_mask
    assert bright.sum() > (without.pixels[without.nodule_mask] >= 235).sum() + 10
    from scipy import ndimage
    assert ndimage.label(bright)[1] >= 3  # several separate foci, not one blob


@pytest.mark.parametrize("patient", range(5))
def test_the_nodule_box_lies_inside_the_image_area_around_the_nodule(patient):
    example = render_example(9, patient)
    if example.case.label == 1:
        assert example.nodule_box is None and example.case.nodule is None
        return
    box, area, nodule = example.nodule_box, example.image_box, example.case.nodule
    assert area.x0 <= box.x0 < box.x1 <= area.x1 and area.y0 <= box.y0 < box.y1 <= area.y1
    # The box's size matches the drawn nodule (outline wiggles and spicules aside).
    diameter_px = nodule.diameter_mm / 10 * example.px_per_cm
    assert 0.6 * diameter_px < max(box.width, box.height) < 1.8 * diameter_px
    if example.case.features.composition == "cystic":
        cx, cy = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
        assert example.screen[cy - 2:cy + 3, cx - 2:cx + 3].mean() < 25  # anechoic centre


def test_category_1_rows_have_no_box_and_no_features(small_dataset):
    for row in read_manifest(small_dataset):
        has_box = all(row[k] != "" for k in ("x0", "y0", "x1", "y1"))
        assert has_box == (row["label"] != "1")
        if row["label"] == "1":
            assert all(row[column] == "" for column in FEATURE_COLUMNS)


@pytest.mark.parametrize("size", [(560, 360), (800, 600), (320, 200)])
def test_burned_in_text_lies_outside_the_image_area_that_the_region_finder_finds(size):
    width, height = size
    example = render_example(4, 2, width=width, height=height)
    found = find_image_area(example.screen)
    assert (example.annotation_mask > 0).sum() > 200  # there is text and a scale to find
    assert not example.annotation_mask[found.y0:found.y1, found.x0:found.x1].any()
    assert all(abs(a - b) <= 2 for a, b in zip(found, example.image_box))


def test_images_of_one_patient_share_the_nodule_but_not_the_view(tmp_path):
    out = tmp_path / "p"
    generate_dataset(out, n=4, seed=3, images_per_patient=2, progress=False, workers=1)
    rows = read_manifest(out)
    assert [row["patient_id"] for row in rows] == ["phantom-00000"] * 2 + ["phantom-00001"] * 2
    first, second = rows[2], rows[3]
    assert all(first[c] == second[c] for c in ("label",) + FEATURE_COLUMNS)
    assert not np.array_equal(load_gray(out / first["path"]), load_gray(out / second["path"]))


def test_the_contact_sheet_shows_every_class(small_dataset, tmp_path):
    sheet = contact_sheet(small_dataset, tmp_path / "sheet.png", per_class=2, tile_width=140)
    pixels = load_rgb(sheet)
    assert pixels.shape[1] == 2 * 144 + 4 and pixels.shape[0] > 5 * 90


def test_bad_options_raise_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="positive"):
        generate_dataset(tmp_path / "a", n=0, seed=1, progress=False)
    with pytest.raises(InputError, match="too small"):
        generate_dataset(tmp_path / "b", n=1, seed=1, width=300, height=150, progress=False)
    with pytest.raises(InputError, match="balance"):
        generate_dataset(tmp_path / "c", n=1, seed=1, balance="skewed", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        generate_dataset(tmp_path / "full", n=1, seed=1, progress=False)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_the_cli_writes_a_dataset_and_a_contact_sheet(tmp_path, capsys):
    out, sheet = tmp_path / "p", tmp_path / "sheet.png"
    code = main(["phantom", str(out), "--n", "5", "--seed", "1", "--quiet",
                 "--contact-sheet", str(sheet), "--workers", "1"])
    assert code == 0
    assert len(read_manifest(out)) == 5 and sheet.is_file()
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "5 images" in summary[0]


@pytest.mark.parametrize("arguments, reason", [
    (["--n", "0"], "positive"),
    (["--n", "-3"], "positive"),
    (["--per-patient", "0"], "per-patient"),
    (["--contact-sheet", "sheet.jpg"], ".png"),
])
def test_the_cli_reports_bad_options_in_one_line(tmp_path, capsys, arguments, reason):
    assert main(["phantom", str(tmp_path / "p"), "--quiet", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("eutirads: error:") and reason in error and "\n" not in error


def test_the_cli_refuses_an_unwritable_output_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["phantom", str(blocker / "sub"), "--n", "2", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "cannot write" in error and "\n" not in error


def test_a_class_folder_that_cannot_be_made_gives_a_one_line_error(tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "1").write_text("a file where the class folder should go")
    with pytest.raises(InputError, match="cannot write") as error:
        generate_dataset(out, n=2, seed=1, progress=False, workers=1, overwrite=True)
    assert "\n" not in str(error.value)
    assert (out / "1").read_text().startswith("a file")  # nothing already there is lost


def test_every_image_has_its_true_mask_all_zero_for_category_1_and_boxed_by_the_box(
        small_dataset):
    from eutirads.data.manifest import load_mask, row_bbox

    for row in read_manifest(small_dataset):
        assert row["mask"] == f"masks/{row['path']}"
        mask = load_mask(small_dataset, row)
        image = load_gray(small_dataset / row["path"])
        assert mask.shape == image.shape and mask.dtype == bool
        if row["label"] == "1":
            assert not mask.any() and row_bbox(row) is None
            continue
        ys, xs = np.nonzero(mask)
        assert row_bbox(row) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # A nodule, not a speck: a solid share of its box.
        x0, y0, x1, y1 = row_bbox(row)
        assert mask.sum() > 0.4 * (x1 - x0) * (y1 - y0)


def test_the_drawn_descriptors_use_the_vocabulary_of_categories(small_dataset):
    from eutirads.categories import DESCRIPTORS

    assert FEATURE_COLUMNS == tuple(DESCRIPTORS)
    for row in read_manifest(small_dataset):
        for column, values in DESCRIPTORS.items():
            assert row[column] in values or (row["label"] == "1" and row[column] == "")
