"""Real data: import DDTI-dev (EUTIRADS_DDTI_DIR), split it, check the counts of its README.

Skipped, naming the reason, when the folder is absent (see the `ddti_dir` fixture)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from scipy import ndimage

from eutirads.data.importers import import_dataset
from eutirads.categories import DESCRIPTORS
from eutirads.data.manifest import load_mask, read_manifest, row_bbox, write_manifest
from eutirads.data.split import split_dataset
from eutirads.data.summary import summarize

pytestmark = pytest.mark.ddti

README_COUNTS = {"2": 21, "3": 10, "4a": 46, "4b": 39, "4c": 35, "5": 19}


@pytest.fixture(scope="module")
def ddti_dataset(ddti_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddti") / "dataset"
    report = import_dataset(ddti_dir, out, fmt="ddti", progress=False)
    return out, report


def test_ddti_dev_imports_170_labelled_and_126_unlabelled_images(ddti_dataset):
    _, report = ddti_dataset
    assert (report.imported, report.labelled, report.unlabelled) == (296, 170, 126)
    assert report.per_label == README_COUNTS
    assert report.skipped == []


def test_ddti_rows_carry_case_image_features_and_boxes(ddti_dataset):
    dataset, _ = ddti_dataset
    rows = read_manifest(dataset)
    by_path = {row["path"]: row for row in rows}
    row = by_path["images/103_1.jpg"]
    assert (row["patient_id"], row["case"], row["image"], row["label"]) == ("103", "103", "1", "4a")
    assert (row["ddti_composition"], row["ddti_calcifications"], row["sex"]) == (
        "spongiform", "microcalcifications", "F")
    # ... mapped into our descriptor columns (DDTI records no shape).
    assert (row["composition"], row["echogenic_foci"], row["shape"]) == (
        "spongiform", "microcalcifications", "")
    # Two side-by-side views: the box spans both outlines.
    assert row_bbox(row) == (143, 67, 430, 130)
    assert all(0 <= int(r["x0"]) < int(r["x1"]) <= 560 for r in rows if r["x0"])
    no_box_labelled = sorted(r["path"] for r in rows if r["label"] and row_bbox(r) is None)
    assert no_box_labelled == ["images/127_1.jpg", "images/142_2.jpg", "images/176_1.jpg",
                               "images/197_1.jpg"]


def test_ddti_masks_fill_every_outline_and_lie_inside_its_box(ddti_dataset):
    dataset, report = ddti_dataset
    rows = read_manifest(dataset)
    with_mask = [row for row in rows if row["mask"]]
    # 296 images, 10 without a usable outline (6 empty, 4 cut off): unknown, not "no nodule".
    assert report.masks == len(with_mask) == 286
    assert all(bool(row["mask"]) == (row_bbox(row) is not None) for row in rows)
    for row in with_mask[::10]:
        mask = load_mask(dataset, row)
        assert mask.shape == (360, 560) and mask.any()
        ys, xs = mask.nonzero()
        x0, y0, x1, y1 = row_bbox(row)
        assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        # A filled outline, not its rim: most of it survives a 3-pixel erosion.
        assert ndimage.binary_erosion(mask, iterations=3).sum() > 0.5 * mask.sum()


def test_ddti_descriptors_are_mapped_to_our_vocabulary_and_unknown_stays_empty(ddti_dataset):
    dataset, _ = ddti_dataset
    rows = read_manifest(dataset)
    for column, values in DESCRIPTORS.items():
        assert {row[column] for row in rows} <= set(values) | {""}, column
    assert {row["shape"] for row in rows} == {""}  # DDTI records no shape
    known = Counter(sum(1 for c in ("composition", "echogenicity", "margins", "echogenic_foci")
                        if row[c]) for row in rows if row["label"])
    assert known[4] >= 80  # many labelled cases have all four recorded fields
    assert all(row["ddti_margins"] in ("ill defined", "ill- defined", "macrolobulated")
               for row in rows if row["ddti_margins"] and not row["margins"])


def test_ddti_splits_keep_every_case_whole_for_any_seed(ddti_dataset):
    dataset, _ = ddti_dataset
    for seed in (0, 1):
        report = split_dataset(dataset, seed=seed, force=True, progress=False)
        rows = read_manifest(dataset)
        cases = defaultdict(set)
        for row in rows:
            if row["split"]:
                cases[row["case"]].add(row["split"])
        assert all(len(splits) == 1 for splits in cases.values())
        summary = summarize(dataset, check_files=False)
        assert summary["patients_in_several_splits"] == 0
        # Every class reaches every split, even the 10 images of category 3.
        for label in README_COUNTS:
            assert all(report.counts[split].get(label, 0) >= 1 for split in report.counts)
        # Every row gets a split, labelled or not (the localiser learns from outlines).
        assert sum(summary["splits"][s] for s in ("train", "val", "test")) == 296
        assert summary["splits"]["none"] == 0
        assert sum(sum(c.values()) for c in report.counts.values()) == 170
        assert sum(report.unlabelled_counts.values()) == 126
        assert 0.6 < report.unlabelled_counts["train"] / 126 < 0.85


def test_ddti_duplicate_images_stay_in_one_split_even_without_case_numbers(
        ddti_dataset, tmp_path):
    dataset, _ = ddti_dataset
    rows = read_manifest(dataset)
    # Give every image its own patient and a label, so only the fingerprints can keep the
    # four exactly duplicated images and the one re-capture (234_2 / 234_3) together.
    for row in rows:
        row["patient_id"] = row["path"]
        row["label"] = row["label"] or "unl"
        row["split"] = ""
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "images").symlink_to(dataset / "images")
    write_manifest(copy, rows)
    summary = summarize(copy, check_files=False)
    assert summary["duplicate_groups"] == 5 and summary["duplicate_images"] == 10
    for seed in range(3):
        split_dataset(copy, seed=seed, progress=False)
        split_of = {r["path"]: r["split"] for r in read_manifest(copy)}
        by_hash = defaultdict(set)
        for r in read_manifest(copy):
            by_hash[r["pixel_sha256"]].add(r["split"])
        assert all(len(s) == 1 for s in by_hash.values())
        assert split_of["images/234_2.jpg"] == split_of["images/234_3.jpg"]
        assert Counter(split_of.values())["train"] > 150
