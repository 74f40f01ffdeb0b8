"""Import from folders, CSV and the DDTI layout, with tiny images made here, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eutirads.cli import main
from eutirads.data.ddti import outline_box, parse_case
from eutirads.data.importers import import_dataset
from eutirads.data.manifest import image_path, read_manifest
from eutirads.errors import InputError


def make_image(path: Path, seed: int, size: tuple[int, int] = (96, 72)) -> Path:
    """A small smooth random picture (distinct per seed, also to a perceptual hash)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def import_quietly(src, out, fmt, **kwargs):
    lines: list[str] = []
    report = import_dataset(src, out, fmt=fmt, progress=False, on_problem=lines.append,
                            **kwargs)
    return report, lines


# ----------------------------------------------------------------------------- folders

def test_class_folder_names_of_every_style_become_the_same_labels(tmp_path):
    src = tmp_path / "src"
    for i, folder in enumerate(["TIRADS 1", "EU-TIRADS 2", "eu-tirads3", "4", "5", "4a"]):
        make_image(src / folder / f"img{i}.png", seed=i)
    report, lines = import_quietly(src, tmp_path / "ds", "folders")
    rows = read_manifest(tmp_path / "ds")
    assert sorted(row["label"] for row in rows) == ["1", "2", "3", "4", "4a", "5"]
    assert report.imported == 6 and report.skipped == [] and lines == []
    assert {row["source"] for row in rows} == {"folders"}


def test_images_are_copied_under_names_we_make_and_the_manifest_points_to_them(tmp_path):
    src = tmp_path / "src"
    make_image(src / "TIRADS 3" / "plain_name-01.png", seed=1)
    make_image(src / "TIRADS 3" / "Müller, Anna (2019).png", seed=2)
    make_image(src / "TIRADS 3" / "sub folder" / "x.png", seed=3)
    import_quietly(src, tmp_path / "ds", "folders")
    paths = sorted(row["path"] for row in read_manifest(tmp_path / "ds"))
    assert "images/3/plain_name-01.png" in paths
    assert "images/3/sub-folder/x.png" in paths
    odd = [p for p in paths if "img-" in p]
    assert len(odd) == 1 and odd[0].startswith("images/3/img-") and odd[0].endswith(".png")
    assert all(p.isascii() and " " not in p for p in paths)
    for row in read_manifest(tmp_path / "ds"):
        assert image_path(tmp_path / "ds", row).is_file()


def test_existing_train_val_test_folders_are_kept_as_splits(tmp_path):
    src = tmp_path / "src"
    make_image(src / "train" / "TIRADS 2" / "a.png", seed=1)
    make_image(src / "val" / "TIRADS 2" / "b.png", seed=2)
    make_image(src / "test" / "TIRADS 5" / "c.png", seed=3)
    import_quietly(src, tmp_path / "ds", "folders")
    splits = {row["path"]: row["split"] for row in read_manifest(tmp_path / "ds")}
    assert splits == {"images/train/2/a.png": "train", "images/val/2/b.png": "val",
                      "images/test/5/c.png": "test"}


def test_a_source_manifest_is_merged_by_path_and_the_folder_label_wins(tmp_path):
    src = tmp_path / "src"
    make_image(src / "3" / "a.png", seed=1, size=(96, 72))
    make_image(src / "5" / "b.png", seed=2)
    (src / "manifest.csv").write_text(
        "path,label,patient_id,x0,y0,x1,y1,source,composition\n"
        "3/a.png,3,P001,10,12,40,50,phantom,solid\n"
        "5/b.png,4,P002,0,0,500,500,phantom,mixed\n"
        "5/gone.png,5,P003,,,,,phantom,solid\n")
    report, lines = import_quietly(src, tmp_path / "ds", "folders")
    rows = {row["patient_id"]: row for row in read_manifest(tmp_path / "ds")}
    assert rows["P001"]["composition"] == "solid" and rows["P001"]["source"] == "phantom"
    assert (rows["P001"]["x0"], rows["P001"]["y1"]) == ("10", "50")
    assert rows["P002"]["label"] == "5"
    assert (rows["P002"]["x1"], rows["P002"]["y1"]) == ("96", "72"), "box clamped to the image"
    assert any("differs from its folder" in line for line in lines)
    assert any("gone.png" in line and "not found" in line for line in report.skipped)


def test_without_patient_ids_the_summary_says_each_image_is_its_own_group(tmp_path):
    from eutirads.data.summary import summarize

    src = tmp_path / "src"
    make_image(src / "2" / "a.png", seed=1)
    import_quietly(src, tmp_path / "ds", "folders")
    assert summarize(tmp_path / "ds")["patient_grouping"].startswith("none")


def test_an_unlabelled_folder_gives_rows_with_an_empty_label(tmp_path):
    src = tmp_path / "src"
    make_image(src / "unlabelled" / "a.png", seed=1)
    make_image(src / "3" / "b.png", seed=2)
    report, _ = import_quietly(src, tmp_path / "ds", "folders")
    assert report.labelled == 1 and report.unlabelled == 1


# ----------------------------------------------------------------------------- bad input

def test_corrupt_truncated_and_fake_images_are_skipped_one_line_each_and_the_rest_imported(
        tmp_path):
    src = tmp_path / "src"
    good = make_image(src / "3" / "good.png", seed=1)
    (src / "3" / "fake.png").write_bytes(b"this is not an image")
    (src / "3" / "truncated.png").write_bytes(good.read_bytes()[:80])
    (src / "3" / "empty.jpg").write_bytes(b"")
    report, lines = import_quietly(src, tmp_path / "ds", "folders")
    assert report.imported == 1
    assert len(report.skipped) == 3
    for line in report.skipped:
        assert "\n" not in line and str(src / "3") in line
    assert any("fake.png: not an image" in line for line in report.skipped)
    assert any("truncated.png: corrupt or truncated" in line for line in report.skipped)
    assert len(lines) == 3


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    src = tmp_path / "src"
    make_image(src / "3" / "big.png", seed=1, size=(400, 400))
    make_image(src / "3" / "small.png", seed=2)
    report, _ = import_quietly(src, tmp_path / "ds", "folders", max_pixels=100_000)
    assert report.imported == 1
    assert any("big.png: image too large" in line for line in report.skipped)


def test_an_unknown_label_folder_is_reported_once_and_its_images_skipped(tmp_path):
    src = tmp_path / "src"
    make_image(src / "benign" / "a.png", seed=1)
    make_image(src / "benign" / "b.png", seed=2)
    make_image(src / "TIRADS 4" / "c.png", seed=3)
    report, _ = import_quietly(src, tmp_path / "ds", "folders")
    assert report.imported == 1
    assert report.skipped == [f"{src / 'benign'}: unknown label folder (2 image(s) skipped); "
                              "expected e.g. 'TIRADS 3', 'EU-TIRADS 3', '3' or '4a'"]


def test_an_empty_source_folder_fails_and_writes_nothing(tmp_path):
    (tmp_path / "src" / "TIRADS 3").mkdir(parents=True)
    with pytest.raises(InputError, match="no usable images"):
        import_quietly(tmp_path / "src", tmp_path / "ds", "folders")
    assert not (tmp_path / "ds" / "manifest.csv").exists()


def test_strict_mode_fails_on_any_skipped_item_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    make_image(src / "3" / "good.png", seed=1)
    (src / "3" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="--strict"):
        import_quietly(src, tmp_path / "ds", "folders", strict=True)
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())


def test_an_existing_dataset_is_never_overwritten(tmp_path):
    src = tmp_path / "src"
    make_image(src / "3" / "a.png", seed=1)
    import_quietly(src, tmp_path / "ds", "folders")
    before = (tmp_path / "ds" / "manifest.csv").read_bytes()
    with pytest.raises(InputError, match="already holds a dataset"):
        import_quietly(src, tmp_path / "ds", "folders")
    assert (tmp_path / "ds" / "manifest.csv").read_bytes() == before


# ----------------------------------------------------------------------------- csv

def test_a_csv_import_keeps_extra_columns_and_reads_paths_relative_to_the_csv(tmp_path):
    make_image(tmp_path / "pics" / "a.png", seed=1)
    make_image(tmp_path / "pics" / "b.png", seed=2)
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("path,label,patient_id,reader\n"
                        "pics/a.png,EU-TIRADS 4,p1,R1\npics/b.png,,p1,R2\n")
    report, _ = import_quietly(csv_file, tmp_path / "ds", "csv")
    rows = {row["path"]: row for row in read_manifest(tmp_path / "ds")}
    assert rows["images/pics/a.png"]["label"] == "4"
    assert rows["images/pics/a.png"]["reader"] == "R1"
    assert rows["images/pics/b.png"]["label"] == ""
    assert rows["images/pics/b.png"]["source"] == "csv"
    assert report.labelled == 1 and report.unlabelled == 1


def test_a_csv_without_a_label_column_is_refused_naming_the_csv(tmp_path):
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("path,patient\na.png,p1\n")
    with pytest.raises(InputError, match=r"list\.csv: missing column\(s\) label"):
        import_quietly(csv_file, tmp_path / "ds", "csv")


def test_csv_rows_with_missing_files_unknown_labels_or_escaping_paths_are_skipped(tmp_path):
    make_image(tmp_path / "data" / "ok.png", seed=1)
    make_image(tmp_path / "outside.png", seed=2)
    csv_file = tmp_path / "data" / "list.csv"
    csv_file.write_text("path,label\n"
                        "ok.png,3\n"
                        "missing.png,3\n"
                        "ok.png,benign\n"
                        "../outside.png,3\n"
                        "/etc/hostname,3\n")
    report, _ = import_quietly(csv_file, tmp_path / "ds", "csv")
    assert report.imported == 1
    skipped = "\n".join(report.skipped)
    assert "missing.png: file not found" in skipped
    assert "unknown label 'benign'" in skipped
    assert f"{csv_file}:5: path leaves the CSV's folder" in skipped
    assert f"{csv_file}:6: absolute path refused" in skipped
    assert len(report.skipped) == 4


# ----------------------------------------------------------------------------- ddti parsing

CASE_XML = """<case><number>7</number><age>51</age><sex>F</sex><composition>solid</composition>
<echogenicity>hypoechogenicity</echogenicity><margins>well defined</margins>
<calcifications>non</calcifications><tirads>4b</tirads>
<mark><image>1</image><svg>[{"points": [{"x": 10, "y": 20}, {"x": 30, "y": 25}]},
 {"points": [{"x": 300, "y": 5}, {"x": 320, "y": 60}]}]</svg></mark>
<mark><image>2</image><svg>[{"points": [{"x": 10, "y": 20}, {"x":</svg></mark>
<mark><image>3</image><svg></svg></mark></case>"""


def test_a_ddti_box_is_the_union_of_every_outline_region_of_the_image():
    case = parse_case(CASE_XML, name="7.xml")
    assert case.case == "7" and case.tirads == "4b"
    assert case.fields["echogenicity"] == "hypoechogenicity"
    assert case.outlines["1"].box == (10, 5, 321, 61) and case.outlines["1"].regions == 2


def test_a_cut_off_or_empty_ddti_outline_gives_no_box():
    case = parse_case(CASE_XML, name="7.xml")
    assert (case.outlines["2"].status, case.outlines["2"].box) == ("broken", None)
    assert (case.outlines["3"].status, case.outlines["3"].box) == ("empty", None)
    assert outline_box("[]").status == "empty"


def test_a_ddti_import_skips_images_of_a_broken_case_file_and_warns_about_outlines(tmp_path):
    src = tmp_path / "ddti"
    (src / "xml").mkdir(parents=True)
    (src / "xml" / "7.xml").write_text(CASE_XML)
    (src / "xml" / "8.xml").write_text("<case><number>8</number><tirads>")
    for name, seed in (("7_1.jpg", 1), ("7_2.jpg", 2), ("8_1.jpg", 3), ("9_1.jpg", 4)):
        make_image(src / "raw_jpg" / name, seed=seed)
    report, _ = import_quietly(src, tmp_path / "ds", "ddti")
    rows = {row["path"]: row for row in read_manifest(tmp_path / "ds")}
    assert set(rows) == {"images/7_1.jpg", "images/7_2.jpg"}
    first = rows["images/7_1.jpg"]
    assert (first["label"], first["patient_id"], first["case"], first["image"]) == (
        "4b", "7", "7", "1")
    # Box clamped to the 96x72 test image.
    assert (first["x0"], first["y0"], first["x1"], first["y1"]) == ("10", "5", "96", "61")
    assert rows["images/7_2.jpg"]["x0"] == "" and rows["images/7_2.jpg"]["outline"] == "broken"
    assert any("8.xml: not valid XML" in line for line in report.skipped)
    assert any("9_1.jpg: no case file" in line for line in report.skipped)
    assert any("7_2.jpg" in line and "not valid JSON" in line for line in report.warnings)
    assert any("image 3 is outlined" in line for line in report.warnings)


# ----------------------------------------------------------------------------- command line

def test_the_import_command_prints_a_summary_line_and_writes_an_import_report(
        tmp_path, capsys):
    src = tmp_path / "src"
    make_image(src / "TIRADS 2" / "a.png", seed=1)
    (src / "TIRADS 2" / "b.png").write_bytes(b"junk")
    code = main(["dataset", "import", str(src), "--out", str(tmp_path / "ds"),
                 "--format", "folders"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip().splitlines()[-1].startswith("imported 1 image(s)")
    assert f"skipped: {src / 'TIRADS 2' / 'b.png'}: not an image" in err
    saved = json.loads((tmp_path / "ds" / "import_report.json").read_text())
    assert saved["imported"] == 1 and len(saved["skipped"]) == 1


def test_the_import_command_exits_non_zero_with_one_line_when_nothing_is_usable(
        tmp_path, capsys):
    (tmp_path / "src").mkdir()
    code = main(["dataset", "import", str(tmp_path / "src"), "--out", str(tmp_path / "ds"),
                 "--format", "folders"])
    err = capsys.readouterr().err
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("eutirads: error: ") and "no usable images" in last


def test_the_import_command_with_strict_exits_non_zero_on_one_bad_file(tmp_path, capsys):
    src = tmp_path / "src"
    make_image(src / "3" / "a.png", seed=1)
    (src / "3" / "b.png").write_bytes(b"junk")
    code = main(["dataset", "import", str(src), "--out", str(tmp_path / "ds"),
                 "--format", "folders", "--strict"])
    assert code == 2 and "--strict" in capsys.readouterr().err


def test_an_import_on_two_processes_writes_the_same_dataset_and_report_as_on_one(tmp_path):
    from eutirads.phantom import generate_dataset

    src = tmp_path / "src"
    generate_dataset(src, n=10, seed=5, width=320, height=200, progress=False, workers=1)
    (src / "3" / "fake.png").write_bytes(b"this is not an image")
    (src / "masks" / "2").mkdir(parents=True, exist_ok=True)
    first = next((src / "2").glob("*.png"))
    Image.new("L", (7, 7)).save(src / "masks" / "2" / first.name)  # wrong size: a warning
    one, one_lines = import_quietly(src, tmp_path / "one", "folders", workers=1)
    two, two_lines = import_quietly(src, tmp_path / "two", "folders", workers=2)
    assert one_lines == two_lines and len(one_lines) == 2
    assert (one.skipped, one.warnings, one.masks, one.text_boxes_redacted) == (
        two.skipped, two.warnings, two.masks, two.text_boxes_redacted)
    assert (tmp_path / "one" / "manifest.csv").read_bytes() == (
        tmp_path / "two" / "manifest.csv").read_bytes()
    written = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert written and written == sorted(
        p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    for rel in written:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
