"""The ingest batch: bad inputs quarantined with a reason while the batch finishes, resume
after an interruption, idempotent reruns, labels from class folders, zip archives, the key
file's rules, the region finder on files without regions, and the command line."""

from __future__ import annotations

import csv
import importlib
import io
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from dicom_helpers import pydicom_file
from eutirads.cli import main
from eutirads.data.manifest import read_manifest, write_manifest
from eutirads.dicom import ingest
from eutirads.dicom.keys import Keyring, load_or_create_key
from eutirads.errors import ConfigError

# A small palette-colour ultrasound image with a 2D region, uncompressed (OBXXXX1A).
SMALL_US = "OBXXXX1A.dcm"


def _sha(data: bytes, key_dir: Path) -> str:
    """The keyed source hash ingest records, under the test's key (`key_dir`/key)."""
    return Keyring(load_or_create_key(key_dir / "key")).source_hash(data)


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _small_us() -> Dataset:
    return pydicom.dcmread(pydicom_file(SMALL_US))


def _quarantine(out: Path) -> dict[str, tuple[str, str]]:
    with open(out / "quarantine.csv", newline="") as handle:
        return {r["source_key_hash"]: (r["reason_code"], r["reason"])
                for r in csv.DictReader(handle)}


def _nested_sequence_file(depth: int) -> bytes:
    """A Part 10 file whose content nests `depth` sequences, built byte by byte (pydicom
    itself would recurse too deep to write the deepest ones)."""
    base = _dicom_bytes(_small_us())
    opening = (struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + b"\xff\xff\xff\xff" +
               struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF))
    closing = (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    # Insert before the pixel data element, keeping tag order valid at the top level.
    at = base.index(struct.pack("<HH", 0x7FE0, 0x0010))
    nested = opening * depth + closing * depth
    return base[:at] + nested + base[at:]


def _bad_inputs(folder: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected reason code)."""
    good = _dicom_bytes(_small_us())
    cases: dict[str, tuple[bytes, str]] = {}
    cases["notes.bin"] = (b"this is not an exam\n" * 50, "not-an-image")
    cases["truncated_header.dcm"] = (good[:600], "bad-header")
    cases["truncated_pixels.dcm"] = (good[:len(good) // 2], "bad-header")
    huge = _small_us()
    huge.NumberOfFrames = 50_000_000
    cases["huge_frames.dcm"] = (_dicom_bytes(huge), "bad-header")
    liar = _small_us()
    liar.Rows = liar.Rows * 2
    cases["rows_lie.dcm"] = (_dicom_bytes(liar), "bad-header")
    rle = pydicom.dcmread(pydicom_file("OBXXXX1A_rle.dcm"))
    rle.Columns = rle.Columns + 16
    cases["columns_lie_rle.dcm"] = (_dicom_bytes(rle), "undecodable")
    for name, change in (("zero", (120, 60, 120, 518)), ("inverted", (800, 60, 120, 518)),
                         ("outside", (900, 700, 990, 790))):
        ds = _small_us()
        region = ds.SequenceOfUltrasoundRegions[0]
        (region.RegionLocationMinX0, region.RegionLocationMinY0,
         region.RegionLocationMaxX1, region.RegionLocationMaxY1) = change
        cases[f"region_{name}.dcm"] = (_dicom_bytes(ds), "no-region")
    cases["nested_40.dcm"] = (_nested_sequence_file(40), "unreadable")
    cases["nested_3000.dcm"] = (_nested_sequence_file(3000), "unreadable")
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    return cases


def test_every_bad_input_is_quarantined_with_its_reason_and_the_batch_finishes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cases = _bad_inputs(src)
    shutil.copy(pydicom_file("OBXXXX1A_rle_2frame.dcm"), src / "good.dcm")
    out = tmp_path / "ds"
    report = ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert report.done == 1 and report.frames == 2
    quarantined = _quarantine(out)
    for name, (data, code) in cases.items():
        got_code, reason = quarantined[_sha(data, tmp_path)]
        assert got_code == code, (name, got_code, reason)
        assert "\n" not in reason and len(reason) < 300
    assert "truncated" in quarantined[_sha(cases["truncated_header.dcm"][0], tmp_path)][1]
    assert "zero size" in quarantined[_sha(cases["region_zero.dcm"][0], tmp_path)][1]
    assert "inverted" in quarantined[_sha(cases["region_inverted.dcm"][0], tmp_path)][1]
    assert "outside" in quarantined[_sha(cases["region_outside.dcm"][0], tmp_path)][1]
    assert "too large" in quarantined[_sha(cases["huge_frames.dcm"][0], tmp_path)][1]
    assert "nested" in quarantined[_sha(cases["nested_40.dcm"][0], tmp_path)][1]
    assert "disagrees" in quarantined[_sha(cases["rows_lie.dcm"][0], tmp_path)][1]
    assert sum(report.quarantined.values()) == len(cases)
    assert "quarantined" in report.summary() and "no-region 3" in report.summary()


def test_a_dicom_named_png_is_quarantined_and_ingested_once_renamed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_file(SMALL_US), src / "photo.png")
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(src / "screen.dcm", format="PNG")
    out = tmp_path / "ds"
    report = ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert report.done == 0 and report.quarantined == {"name-mismatch": 2}
    reasons = sorted(reason for _, reason in _quarantine(out).values())
    assert "holds DICOM; rename it .dcm" in reasons[1] and "plain image" in reasons[0]
    (src / "photo.png").rename(src / "photo.dcm")
    (src / "screen.dcm").unlink()
    again = ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert again.done == 1 and read_manifest(out)[0]["source"] == "dicom"


def test_path_characters_in_file_names_and_uids_never_shape_an_output_path(tmp_path, caplog,
                                                                           capfd):
    src = tmp_path / "src"
    src.mkdir()
    ds = _small_us()
    ds.SOPInstanceUID = "../../../../tmp/evil"
    ds.StudyInstanceUID = "..\\..\\evil"
    ds.SeriesInstanceUID = "/etc/passwd"
    ds.PatientID = "../../DOE^JOHN"
    data = _dicom_bytes(ds)
    (src / "..\\DOE^JOHN:*?<>|.dcm").write_bytes(data)
    with zipfile.ZipFile(src / "exams.zip", "w") as archive:
        archive.writestr("../../outside/SMITH^JANE.dcm", _dicom_bytes(_small_us()))
        archive.writestr("3/../../x.dcm", pydicom_file("OBXXXX1A_rle.dcm").read_bytes())
    out = tmp_path / "ds"
    capfd.readouterr()
    caplog.clear()
    caplog.set_level("DEBUG")
    report = ingest([src], out, key_path=tmp_path / "key", keep_dicom=True, workers=1,
                    progress=True)
    assert report.done == 3, report.summary()
    # pydicom complains about the invalid UIDs, quoting them: none of it may be shown.
    shown = caplog.text + "".join(capfd.readouterr())
    assert not any(bad in shown for bad in ("DOE", "JOHN", "SMITH", "evil", "passwd"))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(src) or p.is_relative_to(out) or p.name == "key"
               for p in written)
    for path in out.rglob("*"):
        name = str(path.relative_to(out))
        assert not any(bad in name for bad in ("DOE", "JOHN", "SMITH", "JANE", "evil", "..",
                                               "passwd", ":", "*"))
    back = [pydicom.dcmread(p) for p in (out / "dicom").rglob("*.dcm")]
    assert all(d.SOPInstanceUID.startswith("2.25.") for d in back)


def test_files_in_class_folders_get_their_label_and_others_none(tmp_path):
    src = tmp_path / "src"
    for folder in ("3", "TR4", "misc"):
        (src / folder).mkdir(parents=True)
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src / "3" / "a.dcm")
    shutil.copy(pydicom_file("OBXXXX1A_rle.dcm"), src / "TR4" / "b.dcm")
    shutil.copy(pydicom_file("examples_palette.dcm"), src / "misc" / "c.dcm")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "ds"
    report = ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert report.ignored == 1
    labels = {row["source_key_hash"]: row["label"] for row in read_manifest(out)}
    assert labels[_sha((src / "3" / "a.dcm").read_bytes(), tmp_path)] == "3"
    assert labels[_sha((src / "TR4" / "b.dcm").read_bytes(), tmp_path)] == "4"
    assert labels[_sha((src / "misc" / "c.dcm").read_bytes(), tmp_path)] == ""


# --- resume and idempotence ---------------------------------------------------------------

def _resume_sources(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "2").mkdir(parents=True)
    for number, name in enumerate(["OBXXXX1A.dcm", "OBXXXX1A_rle_2frame.dcm",
                                   "examples_ybr_color.dcm", "gdcm-US-ALOKA-16.dcm",
                                   "JPGLosslessP14SV1_1s_1f_8b.dcm", "OBXXXX1A_expb_2frame.dcm"]):
        shutil.copy(pydicom_file(name), src / "2" / f"{number}.dcm")
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    return src


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".ingest" not in p.parts}


def test_an_interrupted_ingest_resumed_equals_an_uninterrupted_one(tmp_path):
    src = _resume_sources(tmp_path)
    key = tmp_path / "key"
    whole = tmp_path / "whole"
    ingest([src], whole, key_path=key, frames=3, workers=1, progress=False)

    class Stop(Exception):
        pass

    seen = []

    def stop_after_three(result):
        seen.append(result)
        if len(seen) == 3:
            raise Stop

    resumed = tmp_path / "resumed"
    with pytest.raises(Stop):
        ingest([src], resumed, key_path=key, frames=3, workers=2, progress=False,
               on_result=stop_after_three)
    partial = read_manifest(resumed)
    assert 0 < len({r["source_key_hash"] for r in partial}) < 6
    # A kill can also leave half a journal line behind: the rerun must cope.
    with open(resumed / ".ingest" / "journal.jsonl", "a") as journal:
        journal.write('{"key_hash": "abc", "status": "do')
    report = ingest([src], resumed, key_path=key, frames=3, workers=2, progress=False)
    assert report.skipped == 3 and report.done + sum(report.quarantined.values()) == 4
    assert _snapshot(resumed) == _snapshot(whole)
    rows = read_manifest(resumed)
    assert len(rows) == len({r["path"] for r in rows})  # no duplicate


def test_a_rerun_skips_everything_and_keeps_labels_and_splits_added_since(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src / "a.dcm")
    out = tmp_path / "ds"
    ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    rows = read_manifest(out)
    rows[0]["label"], rows[0]["split"], rows[0]["reader_note"] = "4", "test", "checked"
    write_manifest(out, rows)
    report = ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert report.skipped == 1 and report.done == 0
    again = read_manifest(out)
    assert len(again) == 1 and again[0]["label"] == "4" and again[0]["split"] == "test"
    assert again[0]["reader_note"] == "checked"


def test_the_same_bytes_under_two_names_are_ingested_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src / "a.dcm")
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src / "b.dcm")
    report = ingest([src], tmp_path / "ds", key_path=tmp_path / "key", workers=1,
                    progress=False)
    assert report.done == 1 and report.duplicates == 1
    assert len(read_manifest(tmp_path / "ds")) == 1


# --- the key and the dataset's options ----------------------------------------------------

def test_a_dataset_refuses_another_key_other_options_and_a_key_inside_it(tmp_path):
    src = tmp_path / "a.dcm"
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src)
    out = tmp_path / "ds"
    ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    with pytest.raises(ConfigError, match="another key"):
        ingest([src], out, key_path=tmp_path / "other", workers=1, progress=False)
    with pytest.raises(ConfigError, match="other options"):
        ingest([src], out, key_path=tmp_path / "key", frames="first", workers=1,
               progress=False)
    with pytest.raises(ConfigError, match="inside the dataset"):
        ingest([src], out, key_path=out / "key", workers=1, progress=False)
    assert not any("key" == p.name for p in out.rglob("*"))


def test_a_group_readable_key_file_is_refused(tmp_path):
    key = tmp_path / "key"
    key.write_text("00" * 32)
    os.chmod(key, 0o640)
    with pytest.raises(ConfigError, match="group/others"):
        ingest([pydicom_file(SMALL_US)], tmp_path / "ds", key_path=key, workers=1,
               progress=False)


# --- files without ultrasound regions: the region finder -------------------------------

def _phantom_exams(tmp_path: Path, n: int = 4) -> Path:
    phantom = pytest.importorskip("eutirads.phantom.dicom",
                                  reason="the phantom's DICOM writer is not present")
    root = tmp_path / "pd"
    phantom.generate_dicom(root, n=n, seed=5, progress=False, workers=1)
    return root


def test_detect_region_finds_the_phantom_image_area_and_leaves_the_banner_out(tmp_path):
    exams = _phantom_exams(tmp_path)
    stripped = tmp_path / "stripped"
    truth = {}
    for number, path in enumerate(sorted(exams.rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        region = ds.SequenceOfUltrasoundRegions[0]
        truth_box = (region.RegionLocationMinX0, region.RegionLocationMinY0,
                     region.RegionLocationMaxX1 + 1, region.RegionLocationMaxY1 + 1)
        del ds.SequenceOfUltrasoundRegions
        stripped.mkdir(exist_ok=True)
        data = _dicom_bytes(ds)
        (stripped / f"{number}.dcm").write_bytes(data)
        truth[_sha(data, tmp_path)] = truth_box
    refused = ingest([stripped], tmp_path / "no", key_path=tmp_path / "key", workers=1,
                     progress=False)
    assert refused.quarantined == {"no-region": len(truth)}
    out = tmp_path / "ds"
    report = ingest([stripped], out, key_path=tmp_path / "key", detect_region=True,
                    frames="first", workers=1, progress=False)
    assert report.done == len(truth)
    for row in read_manifest(out):
        x0, y0, x1, y1 = truth[row["source_key_hash"]]
        height, width = np.asarray(Image.open(out / row["path"])).shape[:2]
        # The crop is the image area (give or take its dark edge), never the banner above.
        assert abs(width - (x1 - x0)) <= 12 and abs(height - (y1 - y0)) <= 12
        assert height <= y1 - y0 + 2


@pytest.mark.ddti
def test_ddti_screenshots_are_cropped_to_the_image_area_without_the_scanner_text(ddti_dir,
                                                                               tmp_path):
    from eutirads.region import find_image_area

    jpgs = sorted((ddti_dir / "raw_jpg").glob("*.jpg"))[:12]
    src = tmp_path / "src"
    src.mkdir()
    for path in jpgs:
        shutil.copy(path, src / path.name)
    out = tmp_path / "ds"
    report = ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert report.done == len(jpgs), report.summary()
    for path, row in zip(sorted(jpgs, key=lambda p: _sha(p.read_bytes(), tmp_path)),
                         sorted(read_manifest(out), key=lambda r: r["source_key_hash"])):
        assert row["source"] == "image" and row["label"] == ""
        assert path.stem not in row["path"]
        pixels = np.asarray(Image.open(path).convert("L")).astype(int)
        box = find_image_area(pixels)
        # DDTI's text (top-left info, depth scale on the right) is bright on black: the
        # frame outside the box holds it, and the box is most of the screen's width.
        outside = pixels.copy()
        outside[box.y0:box.y1, box.x0:box.x1] = 0
        assert (outside > 150).sum() > 20, "the scanner's text should lie outside the crop"
        assert box.width > 0.5 * pixels.shape[1] and box.height > 0.6 * pixels.shape[0]
        crop = np.asarray(Image.open(out / row["path"]))
        assert crop.shape[:2] == (box.height, box.width)


# --- command line ---------------------------------------------------------------------

def test_the_command_line_ingests_and_prints_a_one_line_summary(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_file("OBXXXX1A_rle_2frame.dcm"), src / "a.dcm")
    (src / "junk.dcm").write_bytes(b"junk" * 100)
    code = main(["ingest", str(src), "--out", str(tmp_path / "ds"), "--key",
                 str(tmp_path / "key"), "--frames", "first", "--keep-dicom", "--no-progress",
                 "--workers", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    # OBXXXX1A shows "+ Cist Mag 1.06 cm" and a "P" marker inside its region: redacted.
    assert "2 files: 1 ingested (1 frames, 2 burned-in text boxes redacted)" in printed
    assert "not-an-image 1" in printed
    assert len(list((tmp_path / "ds" / "dicom").rglob("*.dcm"))) == 1


def test_the_command_line_rejects_a_bad_frames_value_in_one_line(tmp_path, capsys):
    code = main(["ingest", str(tmp_path), "--out", str(tmp_path / "ds"), "--frames", "0"])
    assert code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_missing_source_is_reported_without_echoing_its_path(tmp_path, capsys):
    code = main(["ingest", str(tmp_path / "DOE_JOHN"), "--out", str(tmp_path / "ds"),
                 "--key", str(tmp_path / "key")])
    err = capsys.readouterr().err
    assert code == 2 and "DOE_JOHN" not in err and "source #1" in err


def test_a_file_that_kills_its_worker_is_quarantined_and_the_others_still_ingest(
        tmp_path, monkeypatch):
    """A decoder crash (a segfault in native code) takes the whole process pool down; the
    batch retries the lost files one per process and quarantines only the guilty one."""
    module = importlib.import_module("eutirads.dicom.pipeline")

    real = module.ingest_file

    def crashing(ref, ctx):
        if ref.path.endswith("crash.dcm"):
            os._exit(70)  # what a segfaulting decoder looks like from outside
        return real(ref, ctx)

    monkeypatch.setattr(module, "ingest_file", crashing)  # inherited by forked workers
    src = tmp_path / "src"
    src.mkdir()
    for number, name in enumerate(["OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "examples_palette.dcm",
                                   "OBXXXX1A_expb.dcm"]):
        shutil.copy(pydicom_file(name), src / f"{number}.dcm")
    crash = src / "crash.dcm"
    crash.write_bytes(b"\0" * 64)
    out = tmp_path / "ds"
    report = ingest([src], out, key_path=tmp_path / "key", workers=2, progress=False)
    assert report.done == 4 and report.quarantined == {"crashed": 1}
    assert _quarantine(out)[_sha(crash.read_bytes(), tmp_path)][0] == "crashed"


def test_a_second_ingest_into_a_dataset_in_use_is_refused(tmp_path):
    import fcntl

    src = tmp_path / "a.dcm"
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src)
    out = tmp_path / "ds"
    (out / ".ingest").mkdir(parents=True)
    with open(out / ".ingest" / "lock", "a+b") as held:  # what a running ingest holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another ingest"):
            ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False)
    assert ingest([src], out, key_path=tmp_path / "key", workers=1, progress=False).done == 1
