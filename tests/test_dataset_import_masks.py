"""Import of masks (mask column, parallel masks/ folder, DDTI outlines) and descriptors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from eutirads.data.importers import import_dataset
from eutirads.data.manifest import load_mask, read_manifest


def make_image(path, seed, size=(96, 72)):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(coarse).resize(size, Image.BILINEAR).save(path)
    return path


def make_mask(path, size=(96, 72), box=(10, 10, 40, 30), value=255):
    mask = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return mask > 0


def run_import(src, out, fmt):
    lines: list[str] = []
    report = import_dataset(src, out, fmt=fmt, progress=False, on_problem=lines.append)
    return report, lines, {row["path"]: row for row in read_manifest(out)}


def test_a_parallel_masks_folder_gives_each_image_its_mask(tmp_path):
    src = tmp_path / "src"
    make_image(src / "3" / "a.png", seed=1)
    make_image(src / "train" / "4" / "b.jpg", seed=2)
    make_image(src / "3" / "c.png", seed=3)
    a = make_mask(src / "masks" / "3" / "a.png")
    b = make_mask(src / "masks" / "train" / "4" / "b.png", box=(0, 0, 5, 5), value=1)
    report, lines, rows = run_import(src, tmp_path / "ds", "folders")
    assert report.imported == 3 and report.masks == 2 and lines == []
    assert rows["images/3/a.png"]["mask"] == "masks/3/a.png"
    assert np.array_equal(load_mask(tmp_path / "ds", rows["images/3/a.png"]), a)
    assert np.array_equal(load_mask(tmp_path / "ds", rows["images/train/4/b.jpg"]), b)
    assert rows["images/3/c.png"]["mask"] == ""  # unknown: no file for it
    assert "with mask" in report.summary_line()


def test_a_mask_column_in_the_source_manifest_is_read_relative_to_it(tmp_path):
    src = tmp_path / "src"
    make_image(src / "2" / "a.png", seed=1)
    make_mask(src / "outlines" / "first.png")
    (src / "manifest.csv").write_text("path,label,mask\n2/a.png,2,outlines/first.png\n")
    report, lines, rows = run_import(src, tmp_path / "ds", "folders")
    assert report.masks == 1 and rows["images/2/a.png"]["mask"] == "masks/2/a.png"


def test_a_csv_mask_column_and_bad_masks_keep_their_rows_with_one_line_each(tmp_path):
    data = tmp_path / "data"
    for name, seed in (("ok.png", 1), ("small.png", 2), ("white.png", 3), ("lost.png", 4),
                       ("junk.png", 5), ("parallel.png", 6)):
        make_image(data / name, seed=seed)
    make_mask(data / "m" / "ok.png")
    make_mask(data / "m" / "small.png", size=(48, 36))
    make_mask(data / "m" / "white.png", box=(0, 0, 96, 72))
    (data / "m" / "junk.png").write_bytes(b"not a png")
    make_mask(data / "masks" / "parallel.png")
    (data / "list.csv").write_text(
        "path,label,mask\nok.png,3,m/ok.png\nsmall.png,3,m/small.png\n"
        "white.png,3,m/white.png\nlost.png,3,m/lost.png\njunk.png,3,m/junk.png\n"
        "parallel.png,3,\n")
    report, lines, rows = run_import(data / "list.csv", tmp_path / "ds", "csv")
    assert report.imported == 6 and report.skipped == [] and report.masks == 2
    assert rows["images/ok.png"]["mask"] and rows["images/parallel.png"]["mask"]
    for name in ("small", "white", "lost", "junk"):
        assert rows[f"images/{name}.png"]["mask"] == ""
    assert all("\n" not in line for line in lines) and len(report.warnings) == 4
    warnings = "\n".join(report.warnings)
    assert (f"mask {data / 'm' / 'small.png'} is 48x36 but its image {data / 'small.png'} "
            "is 96x72; row kept without mask") in warnings
    assert "white.png is all white" in warnings
    assert f"mask {data / 'm' / 'lost.png'} not found" in warnings
    assert "junk.png: not an image" in warnings


def test_descriptor_columns_keep_our_values_and_clear_others_naming_row_and_column(tmp_path):
    data = tmp_path / "data"
    make_image(data / "a.png", seed=1)
    make_image(data / "b.png", seed=2)
    (data / "list.csv").write_text(
        "path,label,composition,echogenicity,shape,margins,echogenic_foci\n"
        "a.png,5,Solid,markedly hypoechoic,taller-than-wide,smooth,none\n"
        "b.png,3,solid,grey,,,\n")
    report, lines, rows = run_import(data / "list.csv", tmp_path / "ds", "csv")
    a, b = rows["images/a.png"], rows["images/b.png"]
    assert (a["composition"], a["echogenicity"], a["shape"]) == (
        "solid", "markedly_hypoechoic", "taller_than_wide")
    assert b["echogenicity"] == "" and b["composition"] == "solid"
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith(f"{data / 'list.csv'}:3: column echogenicity: 'grey'")
    assert report.warnings[0].endswith("kept as unknown")


CASE_XML = """<case><number>7</number><composition>predominantly solid</composition>
<echogenicity>marked hypoechogenicity</echogenicity><margins>ill defined</margins>
<calcifications>microcalcification</calcifications><tirads>5</tirads>
<mark><image>1</image><svg>[{"points": [{"x": 10, "y": 10}, {"x": 30, "y": 10}, {"x": 30, "y": 30},
 {"x": 10, "y": 30}]}, {"points": [{"x": 60, "y": 40}, {"x": 80, "y": 40}, {"x": 70, "y": 60}]}]</svg>
</mark><mark><image>2</image><svg>[{"points": [{"x": 10, "y": 20}, {"x": 30, "y": 25}]}]</svg></mark>
<mark><image>3</image><svg>[{"points": [{"x": 10, "y": 20}, {"x":</svg></mark>
<mark><image>4</image><svg>[{"points": [{"x": -5, "y": -5}, {"x": 200, "y": -5}, {"x": 200,
 "y": 200}, {"x": -5, "y": 200}]}]</svg></mark></case>"""


def test_a_ddti_mask_is_the_union_of_the_outlines_and_no_outline_is_unknown(tmp_path):
    src = tmp_path / "ddti"
    (src / "xml").mkdir(parents=True)
    (src / "xml" / "7.xml").write_text(CASE_XML)
    for k in range(1, 6):
        make_image(src / "raw_jpg" / f"7_{k}.jpg", seed=k)
    report, lines, rows = run_import(src, tmp_path / "ds", "ddti")
    first = rows["images/7_1.jpg"]
    mask = load_mask(tmp_path / "ds", first)
    assert first["mask"] == "masks/7_1.png" and mask.shape == (72, 96)
    assert mask[20, 20] and mask[45, 70] and not mask[50, 40]  # both regions, not between
    assert mask[10:31, 10:31].all()
    # two points only, a cut-off outline, an outline over the whole image, none at all:
    # each unknown, never "no nodule"
    for k in (2, 3, 4, 5):
        assert rows[f"images/7_{k}.jpg"]["mask"] == ""
    warnings = "\n".join(report.warnings)
    assert "7_2.jpg in 7.xml: no polygon with three points; row kept without mask" in warnings
    assert "7_4.jpg in 7.xml: covers the whole image" in warnings
    assert "7_5.jpg: no outline" in warnings
    assert report.masks == 1
    # DDTI's own words are kept; ours are mapped, "ill defined" stays unknown.
    assert (first["ddti_composition"], first["ddti_margins"]) == ("predominantly solid",
                                                                   "ill defined")
    assert (first["composition"], first["echogenicity"], first["margins"],
            first["echogenic_foci"], first["shape"]) == (
        "mixed", "markedly_hypoechoic", "", "microcalcifications", "")
