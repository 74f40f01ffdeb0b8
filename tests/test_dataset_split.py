"""Splits and folds: grouped by patient and duplicates, stratified, deterministic; summary."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image, ImageDraw

from eutirads.cli import main
from eutirads.data.hashing import PHASH_THRESHOLD, hamming, hash_image
from eutirads.data.manifest import read_manifest, write_manifest
from eutirads.data.split import (assign_splits, group_rows, patient_folds, split_dataset)
from eutirads.data.summary import format_summary, summarize
from eutirads.errors import InputError

from test_dataset_import import import_quietly, make_image

FRACTIONS = {"train": 0.72, "val": 0.18, "test": 0.10}


def groups_split_whole(labels, groups, splits):
    seen = defaultdict(set)
    for label, group, split in zip(labels, groups, splits):
        if label:
            seen[group].add(split)
    return all(len(s) == 1 for s in seen.values())


def synthetic(n_groups=120, seed=0):
    """Labels and groups like a clinic: 1-4 images per patient, one label per patient,
    skewed classes with a rare one."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    classes = ["1", "2", "3", "4", "5"]
    weights = [0.04, 0.2, 0.3, 0.3, 0.16]
    for g in range(n_groups):
        label = str(rng.choice(classes, p=weights))
        for _ in range(int(rng.integers(1, 5))):
            labels.append(label)
            groups.append(g)
    return labels, groups


# ----------------------------------------------------------------------------- assign_splits

def test_no_group_is_ever_split_across_train_val_and_test():
    labels, groups = synthetic()
    splits = assign_splits(labels, groups, FRACTIONS, seed=3)
    assert groups_split_whole(labels, groups, splits)
    assert set(splits) == {"train", "val", "test"}


def test_every_class_is_spread_close_to_the_requested_fractions():
    labels, groups = synthetic(n_groups=300)
    splits = assign_splits(labels, groups, FRACTIONS, seed=0)
    totals = Counter(labels)
    for label, total in totals.items():
        for split, share in FRACTIONS.items():
            got = sum(1 for l, s in zip(labels, splits) if l == label and s == split) / total
            # Whole patients of up to 4 images: allow a few images of slack per class.
            assert abs(got - share) <= 4 / total + 0.02, (label, split, got)


def test_a_class_of_three_single_image_patients_reaches_more_than_one_split():
    labels = ["2"] * 40 + ["3"] * 40 + ["5"] * 3
    groups = list(range(len(labels)))
    splits = assign_splits(labels, groups, FRACTIONS, seed=0)
    rare = [s for l, s in zip(labels, splits) if l == "5"]
    assert "train" in rare and len(set(rare)) >= 2


def test_a_small_split_is_not_left_empty_when_every_class_has_few_patients():
    labels = [str(1 + g % 5) for g in range(20) for _ in range(2)]
    groups = [g for g in range(20) for _ in range(2)]
    sizes = Counter(assign_splits(labels, groups, FRACTIONS, seed=0))
    assert sizes["test"] >= 2 and sizes["val"] >= 6 and sizes["train"] >= 26


def test_the_same_seed_gives_the_same_split_and_another_seed_a_different_one():
    labels, groups = synthetic()
    first = assign_splits(labels, groups, FRACTIONS, seed=7)
    assert assign_splits(labels, groups, FRACTIONS, seed=7) == first
    assert assign_splits(labels, groups, FRACTIONS, seed=8) != first


def test_unlabelled_rows_get_no_split_unless_asked():
    labels = ["3", "", "4", ""] * 10
    splits = assign_splits(labels, list(range(40)), FRACTIONS, seed=0)
    assert all(s == "" for l, s in zip(labels, splits) if not l)
    assert all(s for l, s in zip(labels, splits) if l)


def test_fixed_assignments_are_kept_and_their_group_follows_them():
    labels = ["3"] * 20
    groups = [0, 0] + list(range(1, 19))
    fixed = ["test"] + [""] * 19
    splits = assign_splits(labels, groups, FRACTIONS, seed=0, fixed=fixed)
    assert splits[0] == "test" and splits[1] == "test"


def test_fractions_that_leave_no_room_for_training_are_refused(tmp_path):
    make_image(tmp_path / "src" / "3" / "a.png", seed=1)
    import_quietly(tmp_path / "src", tmp_path / "ds", "folders")
    with pytest.raises(InputError, match="room for train"):
        split_dataset(tmp_path / "ds", val=0.6, test=0.5, progress=False)


# ----------------------------------------------------------------------------- groups

def test_rows_join_a_group_by_patient_identical_pixels_or_near_duplicate_hash():
    far = ["ffff000000000000", "0000ffff00000000", "00000000ffff0000", "000000000000ffff",
           "0f0f0f0f0f0f0f0f"]
    one_bit_off = far[2] * 3 + "00000000ffff0001"
    rows = [
        {"patient_id": "a", "pixel_sha256": "s1", "phash": far[0] * 4},
        {"patient_id": "a", "pixel_sha256": "s2", "phash": far[1] * 4},
        {"patient_id": "b", "pixel_sha256": "s2", "phash": far[2] * 4},
        {"patient_id": "", "pixel_sha256": "s4", "phash": one_bit_off},
        {"patient_id": "", "pixel_sha256": "s5", "phash": far[3] * 4},
        {"patient_id": "", "pixel_sha256": "s6", "phash": far[4] * 4},
    ]
    groups = group_rows(rows)
    assert groups[0] == groups[1] == groups[2] == groups[3]
    assert len({groups[0], groups[4], groups[5]}) == 3


def test_patient_folds_are_grouped_stratified_and_cover_every_labelled_row():
    labels, groups = synthetic(n_groups=150)
    rows = [{"label": l, "patient_id": f"p{g}"} for l, g in zip(labels, groups)]
    rows.append({"label": "", "patient_id": "unl"})
    folds = patient_folds(rows, 5, seed=1)
    assert folds[-1] == -1 and set(folds[:-1]) == {0, 1, 2, 3, 4}
    assert groups_split_whole(labels, groups, folds[:-1])
    sizes = Counter(folds[:-1])
    assert max(sizes.values()) - min(sizes.values()) <= 0.1 * len(labels)


# ----------------------------------------------------------------------------- fingerprints

def scanner_frame(seed: int, caption: str) -> Image.Image:
    """An ultrasound-like screen: black frame with burned-in text and a scale, and a
    textured image area that depends on the seed."""
    rng = np.random.default_rng(seed)
    frame = Image.new("RGB", (560, 360))
    coarse = rng.integers(30, 230, (30, 40), dtype=np.uint8)
    area = Image.fromarray(coarse).resize((400, 300), Image.BILINEAR).convert("RGB")
    frame.paste(area, (80, 30))
    draw = ImageDraw.Draw(frame)
    draw.text((490, 40), caption, fill=(255, 255, 255))
    for y in range(30, 330, 30):
        draw.rectangle((60, y, 66, y + 2), fill=(255, 255, 255))
    return frame


def test_two_different_images_in_the_same_scanner_frame_are_not_near_duplicates():
    a = hash_image(scanner_frame(1, "P100 12L6"))
    b = hash_image(scanner_frame(2, "P100 12L6"))
    assert hamming(a.phash, b.phash) > PHASH_THRESHOLD


def test_a_recapture_with_other_burned_in_text_is_a_near_duplicate_but_not_identical():
    a = hash_image(scanner_frame(1, "P100 12L6"))
    b = hash_image(scanner_frame(1, "DR65 2DG 94"))
    assert a.pixel_sha256 != b.pixel_sha256
    assert hamming(a.phash, b.phash) <= PHASH_THRESHOLD


def test_near_duplicates_from_different_patients_land_in_one_split(tmp_path):
    src = tmp_path / "src"
    for i in range(30):
        scanner_frame(100 + i, "x").save(_mk(src / "3" / f"u{i:02d}.png"))
    scanner_frame(7, "first visit").save(_mk(src / "4" / "dup_a.png"))
    scanner_frame(7, "second visit").save(src / "4" / "dup_b.png")
    scanner_frame(7, "first visit").save(src / "4" / "dup_c.jpg", quality=95)
    for i in range(10):
        scanner_frame(200 + i, "x").save(src / "4" / f"v{i:02d}.png")
    import_quietly(src, tmp_path / "ds", "folders")
    rows = read_manifest(tmp_path / "ds")
    for row in rows:  # every image its own patient: only the hashes can join the copies
        row["patient_id"] = row["path"]
    write_manifest(tmp_path / "ds", rows)
    for seed in range(4):
        split_dataset(tmp_path / "ds", seed=seed, force=True, progress=False)
        splits = {r["path"].rsplit("/", 1)[1]: r["split"] for r in read_manifest(tmp_path / "ds")}
        assert splits["dup_a.png"] == splits["dup_b.png"] == splits["dup_c.jpg"]
    summary = summarize(tmp_path / "ds")
    assert summary["duplicate_groups"] == 1 and summary["duplicate_images"] == 3


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------- split_dataset

def _dataset(tmp_path, n=40, with_splits=False):
    src = tmp_path / "src"
    for i in range(n):
        split = ("train/", "val/", "test/")[i % 3] if with_splits else ""
        make_image(src / f"{split}TIRADS {2 + i % 4}" / f"img{i:03d}.png", seed=i)
    import_quietly(src, tmp_path / "ds", "folders")
    return tmp_path / "ds"


def test_splits_from_the_import_are_kept_unless_forced(tmp_path):
    ds = _dataset(tmp_path, n=12, with_splits=True)
    before = {r["path"]: r["split"] for r in read_manifest(ds)}
    report = split_dataset(ds, seed=5, progress=False)
    assert {r["path"]: r["split"] for r in read_manifest(ds)} == before
    assert report.kept_existing == 12
    split_dataset(ds, seed=5, force=True, val=0.25, test=0.25, progress=False)
    after = {r["path"]: r["split"] for r in read_manifest(ds)}
    assert after != before and set(after.values()) == {"train", "val", "test"}


def test_missing_fingerprints_are_computed_and_cached_in_the_manifest(tmp_path):
    ds = _dataset(tmp_path, n=6)
    rows = read_manifest(ds)
    for row in rows:
        row["pixel_sha256"] = row["phash"] = ""
    write_manifest(ds, rows)
    split_dataset(ds, progress=False)
    assert all(len(r["phash"]) == 64 and len(r["pixel_sha256"]) == 64 for r in read_manifest(ds))


def test_an_undecodable_image_is_left_out_of_the_split_and_listed_by_summary(tmp_path):
    ds = _dataset(tmp_path, n=8)
    rows = read_manifest(ds)
    broken = rows[0]["path"]
    (ds / broken).write_bytes(b"broken now")
    rows[0]["pixel_sha256"] = rows[0]["phash"] = ""
    write_manifest(ds, rows)
    report = split_dataset(ds, progress=False)
    assert report.undecodable == [broken]
    assert {r["path"]: r["split"] for r in read_manifest(ds)}[broken] == ""
    summary = summarize(ds)
    assert [f["path"] for f in summary["decode_failures"]] == [broken]
    assert "failed to decode: 1" in format_summary(summary)


def test_the_split_and_summary_commands_print_one_line_and_a_table(tmp_path, capsys):
    ds = _dataset(tmp_path, n=20)
    assert main(["dataset", "split", str(ds), "--seed", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"split {ds}: train ")
    assert "20 image(s) without patient id, each its own group" in out[0]
    assert main(["dataset", "summary", str(ds)]) == 0
    table = capsys.readouterr().out
    assert "label" in table and "train" in table and "duplicate groups: 0" in table
    assert main(["dataset", "summary", str(ds), "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 20 and summary["patients_in_several_splits"] == 0
    assert sum(summary["splits"][s] for s in ("train", "val", "test")) == 20


def test_the_split_command_refuses_a_folder_without_manifest_in_one_line(tmp_path, capsys):
    assert main(["dataset", "split", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.csv: no manifest here" in err[0]


def test_kept_splits_that_put_one_image_in_train_and_test_are_reported(tmp_path):
    src = tmp_path / "src"
    make_image(src / "train" / "3" / "same.png", seed=1)
    make_image(src / "test" / "3" / "same.png", seed=1)
    make_image(src / "train" / "4" / "other.png", seed=2)
    import_quietly(src, tmp_path / "ds", "folders")
    report = split_dataset(tmp_path / "ds", progress=False)
    assert report.leaking_groups == 1 and "straddle" in report.summary_line()
    assert summarize(tmp_path / "ds")["groups_in_several_splits"] == 1
    forced = split_dataset(tmp_path / "ds", force=True, progress=False)
    assert forced.leaking_groups == 0


# ----------------------------------------------------------------------------- unlabelled rows

def test_unlabelled_rows_follow_their_group_and_leave_the_labelled_split_unchanged():
    labels, groups = synthetic(n_groups=120, seed=4)
    alone = assign_splits(labels, groups, FRACTIONS, seed=2)
    # Add unlabelled images: some of labelled patients, some of patients without labels.
    extra_labels = labels + [""] * 60
    extra_groups = groups + [groups[i * 5] for i in range(30)] + [1000 + i // 2 for i in range(30)]
    splits = assign_splits(extra_labels, extra_groups, FRACTIONS, seed=2,
                           include_unlabelled=True)
    assert splits[:len(labels)] == alone
    assert all(splits)
    split_of_group = {}
    for group, split in zip(extra_groups, splits):
        assert split_of_group.setdefault(group, split) == split  # groups whole
    only_unlabelled = Counter(s for g, s in zip(extra_groups, splits) if g >= 1000)
    assert only_unlabelled["train"] > only_unlabelled["test"] and only_unlabelled["val"] >= 1
    # Without the option unlabelled rows stay out, as the classifier's folds want.
    assert assign_splits(extra_labels, extra_groups, FRACTIONS, seed=2)[len(labels):] == [""] * 60


def test_patient_folds_can_cover_unlabelled_rows_without_moving_the_labelled_ones():
    rows = [{"label": str(2 + i % 3), "patient_id": f"p{i}"} for i in range(30)]
    rows += [{"label": "", "patient_id": f"p{i}"} for i in range(10)]
    rows += [{"label": "", "patient_id": f"q{i}"} for i in range(10)]
    plain = patient_folds(rows, 5, seed=3)
    every = patient_folds(rows, 5, seed=3, include_unlabelled=True)
    assert plain[30:] == [-1] * 20 and every[:30] == plain[:30]
    assert all(f >= 0 for f in every)
    assert every[30:40] == plain[:10]  # the patients' labelled images decide
    assert len(set(every[40:])) >= 3


def test_split_dataset_gives_unlabelled_rows_a_split_and_keeps_existing_ones(tmp_path):
    src = tmp_path / "src"
    for i in range(20):
        make_image(src / f"TIRADS {2 + i % 3}" / f"img{i:03d}.png", seed=i)
    for i in range(10):
        make_image(src / "unlabelled" / f"u{i:03d}.png", seed=100 + i)
    import_quietly(src, tmp_path / "ds", "folders")
    report = split_dataset(tmp_path / "ds", seed=1, progress=False)
    rows = read_manifest(tmp_path / "ds")
    assert all(row["split"] for row in rows)
    assert report.unlabelled == 10 and sum(report.unlabelled_counts.values()) == 10
    assert "10 unlabelled (train " in report.summary_line()
    before = {r["path"]: r["split"] for r in rows}
    again = split_dataset(tmp_path / "ds", seed=9, progress=False)
    assert {r["path"]: r["split"] for r in read_manifest(tmp_path / "ds")} == before
    assert again.kept_existing == 30


def test_the_summary_counts_masks_known_descriptors_and_unusable_masks(tmp_path, capsys):
    from eutirads.data.masks import save_mask

    data = tmp_path / "data"
    for i in range(4):
        make_image(data / f"{i}.png", seed=i)
    for i in range(3):
        save_mask(np.pad(np.ones((5, 5)), ((10, 57), (10, 81))), data / "masks" / f"{i}.png")
    (data / "list.csv").write_text("path,label,composition,margins\n0.png,3,solid,smooth\n"
                                   "1.png,,mixed,\n2.png,4,,\n3.png,4,,\n")
    import_quietly(data / "list.csv", tmp_path / "ds", "csv")
    ds = tmp_path / "ds"
    rows = read_manifest(ds)
    rows[3]["echogenicity"] = "grey"  # edited by hand after import
    write_manifest(ds, rows)
    save_mask(np.zeros((10, 10)), ds / rows[2]["mask"])  # now the wrong size
    summary = summarize(ds)
    assert (summary["masks"], summary["masks_labelled"]) == (3, 2)
    assert summary["descriptors"]["composition"] == {
        "known": 2, "invalid": 0,
        "values": {"cystic": 0, "spongiform": 0, "solid": 1, "mixed": 1}}
    assert summary["descriptors"]["echogenicity"]["invalid"] == 1
    assert summary["descriptors"]["echogenicity"]["known"] == 0
    assert [f["path"] for f in summary["mask_failures"]] == [rows[2]["path"]]
    assert "is 10x10 but its image" in summary["mask_failures"][0]["reason"]
    table = format_summary(summary)
    assert "masks: 3 (2 labelled)" in table and "unusable masks: 1" in table
    assert "descriptors known: composition 2, echogenicity 0 (+1 invalid), shape 0" in table
