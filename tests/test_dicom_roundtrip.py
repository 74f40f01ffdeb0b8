"""Round trip: de-identify every ultrasound file we can get, write, read back, and demand
that nothing identifying survives anywhere (every element, sequences included, and the raw
bytes), that UIDs map consistently, that date intervals are kept and that the burned-in
name is gone from the pixels."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_helpers import (external_ultrasound_files, identifying_values, raw_without_pixels,
                           text_of, ultrasound_test_files)
from eutirads.dicom import ingest
from eutirads.dicom.deidentify import deidentify_dataset, identity_of, mark_pixels_cleaned
from eutirads.dicom.keys import Keyring, load_or_create_key

KEY = bytes(range(32))
US_FILES = ultrasound_test_files()
# pydicom's, pydicom-data's and deid-data's (burned-in text) ultrasound files.
ALL_US_FILES = external_ultrasound_files()


def _sha(path: Path, key_file: Path) -> str:
    """The keyed source hash ingest records for `path` under `key_file`."""
    return Keyring(load_or_create_key(key_file)).source_hash(path.read_bytes())


def test_the_test_data_holds_ultrasound_files_of_every_kind():
    names = {p.name for p in US_FILES}
    # pydicom's own files and the pydicom-data package (a test dependency) both count.
    assert {"US1_UNCR.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm", "OBXXXX1A_rle.dcm",
            "examples_ybr_color.dcm", "gdcm-US-ALOKA-16.dcm"} <= names
    assert len(US_FILES) >= 15


@pytest.mark.parametrize("path", ALL_US_FILES, ids=lambda p: p.name)
def test_deidentified_ultrasound_file_holds_no_original_identifying_value(path):
    original = pydicom.dcmread(path)
    secrets = identifying_values(original)
    assert secrets, "the file should have something to hide"
    ds = pydicom.dcmread(path)
    keyring = Keyring(KEY)
    deidentify_dataset(ds, keyring, identity_of(ds, keyring, fallback="x"))
    assert "PixelData" not in ds  # the cleaned pixels are written later, by the caller
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    back = pydicom.dcmread(io.BytesIO(raw))
    texts = text_of(back) + text_of(back.file_meta)
    for secret in secrets:
        # As a whole word: the given name MARY is found, the term PRIMARY is not it.
        word = re.compile(rb"(?<![A-Za-z0-9])" + re.escape(secret.encode("latin-1",
                          "replace")) + rb"(?![A-Za-z0-9])")
        assert not word.search(raw), f"{secret!r} in raw bytes"
        assert not any(word.search(text.encode("latin-1", "replace")) for text in texts), \
            f"{secret!r} in an element"
    assert not any(elem.tag.is_private for elem in back.iterall())
    assert "IconImageSequence" not in back and not any(0x6000 <= e.tag.group <= 0x60FF
                                                       for e in back.iterall())
    assert back.PatientIdentityRemoved == "YES"
    assert back.PatientID == back.PatientName == identity_of(original, keyring,
                                                             fallback="x").patient_id
    codes = [item.CodeValue for item in back.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113105"]  # 113101 only once pixels are clean
    assert "BurnedInAnnotation" not in back or back.BurnedInAnnotation != "NO"
    assert back.SOPClassUID == original.SOPClassUID
    if "StudyInstanceUID" in original:
        assert back.StudyInstanceUID == keyring.uid(original.StudyInstanceUID)
        assert back.StudyInstanceUID.startswith("2.25.") and len(back.StudyInstanceUID) <= 64


def test_pixel_cleaning_is_recorded_only_when_marked():
    ds = pydicom.dcmread(US_FILES[0])
    keyring = Keyring(KEY)
    deidentify_dataset(ds, keyring, identity_of(ds, keyring, fallback="x"))
    mark_pixels_cleaned(ds)
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


def test_every_ultrasound_file_ingests_and_its_kept_dicom_reads_back_clean(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for number, path in enumerate(ALL_US_FILES):
        shutil.copy(path, src / f"{number:02d}.dcm")
    cine = ALL_US_FILES[-1].parent / "GREYSCALE_CINE.zip"  # deid-data's cine, zipped
    if cine.is_file():
        shutil.copy(cine, src / "cine.zip")
    out, key = tmp_path / "ds", tmp_path / "key"
    report = ingest([src], out, key_path=key, frames="first", keep_dicom=True,
                    detect_region=True, workers=2, progress=False)
    distinct = {_sha(path, key) for path in ALL_US_FILES}  # two files are byte-identical
    assert report.duplicates == len(ALL_US_FILES) - len(distinct)
    # The only files held back are those that declare no region and whose pixels hold
    # no speckled image area (pydicom's colour-bar test images): no guess, no text band.
    assert set(report.quarantined) <= {"no-region"}
    cines = 1 if cine.is_file() else 0
    assert report.done + report.quarantined["no-region"] == len(distinct) + cines
    assert report.done >= len(distinct) - 3
    by_sha = {}
    with open(out / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            by_sha.setdefault(row["source_key_hash"], row)
    for number, path in enumerate(ALL_US_FILES):
        sha = _sha(path, key)
        if sha not in by_sha:
            assert "SequenceOfUltrasoundRegions" not in pydicom.dcmread(path)
            continue
        row = by_sha[sha]
        written = out / "dicom" / row["patient_id"] / f"{sha[:16]}.dcm"
        back = pydicom.dcmread(written)
        assert back.BurnedInAnnotation == "NO"
        raw = raw_without_pixels(written)
        texts = text_of(back)
        for secret in identifying_values(pydicom.dcmread(path)):
            # As a whole word: the given name MARY is found, the term PRIMARY is not it.
            word = re.compile(rb"(?<![A-Za-z0-9])" + re.escape(secret.encode("latin-1",
                              "replace")) + rb"(?![A-Za-z0-9])")
            assert not word.search(raw), (path.name, secret)
            assert not any(word.search(text.encode("latin-1", "replace")) for text in texts), \
                (path.name, secret)
        png = np.asarray(Image.open(out / row["path"]))
        assert png.shape[:2] != (back.Rows, back.Columns) or png.any()


# --- the phantom's DICOM exams: invented identities, names burned into the pixels ------

@pytest.fixture(scope="module")
def phantom_exams(tmp_path_factory):
    phantom = pytest.importorskip("eutirads.phantom.dicom",
                                  reason="the phantom's DICOM writer is not present")
    root = tmp_path_factory.mktemp("phantom") / "pd"
    phantom.generate_dicom(root, n=14, seed=3, progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def phantom_dataset(phantom_exams, tmp_path_factory):
    base = tmp_path_factory.mktemp("phantom-out")
    out = base / "ds"
    report = ingest([phantom_exams], out, key_path=base / "key", keep_dicom=True,
                    workers=1, progress=False)
    return out, report, base / "key"


def _phantom_secrets(root: Path) -> list[re.Pattern]:
    """Every invented value, and each part of a name as a whole word (so the surname
    THYRO is found, but the body part THYROID is not mistaken for it)."""
    document = json.loads((root / "phantom_identities.json").read_text())
    values = {document["private_creator"]}
    parts = set()
    for patient in document["patients"]:
        for key, value in patient.items():
            for item in value if isinstance(value, list) else [value]:
                values.add(str(item))
                if "name" in key or key in ("referring_physician", "operator"):
                    parts.update(p for p in re.split(r"[\^, ]+", str(item)) if len(p) >= 4)
    patterns = [re.compile(re.escape(v).encode()) for v in values if len(v) >= 4]
    patterns += [re.compile(rb"(?<![A-Za-z])" + re.escape(p).encode() + rb"(?![A-Za-z])")
                 for p in parts]
    return patterns


def test_phantom_exams_leave_no_trace_of_their_invented_identities(phantom_exams,
                                                                    phantom_dataset):
    out, report, _ = phantom_dataset
    assert report.done == 14 and not report.quarantined
    secrets = _phantom_secrets(phantom_exams)
    for file in out.rglob("*"):
        name = str(file.relative_to(out)).encode()
        assert not any(s.search(name) for s in secrets)
        if not file.is_file():
            continue
        if file.suffix == ".dcm":
            data = raw_without_pixels(file)
            data += "\n".join(text_of(pydicom.dcmread(file))).encode()
        else:
            data = file.read_bytes()
        for secret in secrets:
            assert not secret.search(data), (file.name, secret.pattern)


def _originals(root: Path, key: Path) -> dict[str, pydicom.Dataset]:
    return {_sha(p, key): pydicom.dcmread(p) for p in sorted(root.rglob("*.dcm"))}


def _outputs(out: Path) -> dict[str, tuple[dict, pydicom.Dataset]]:
    rows = {}
    with open(out / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["source_key_hash"], row)
    return {sha: (row, pydicom.dcmread(out / "dicom" / row["patient_id"] / f"{sha[:16]}.dcm"))
            for sha, row in rows.items()}


def test_phantom_uids_map_consistently_within_each_study(phantom_exams, phantom_dataset):
    out, _, key = phantom_dataset
    originals, outputs = _originals(phantom_exams, key), _outputs(out)
    study_map, series_map, study_ids = {}, {}, {}
    for sha, original in originals.items():
        row, back = outputs[sha]
        study_map.setdefault(original.StudyInstanceUID, set()).add(back.StudyInstanceUID)
        series_map.setdefault(original.SeriesInstanceUID, set()).add(back.SeriesInstanceUID)
        study_ids.setdefault(original.StudyInstanceUID, set()).add(row["study_id"])
        assert back.SOPInstanceUID != original.SOPInstanceUID
        assert back.FrameOfReferenceUID if "FrameOfReferenceUID" in original else True
    assert all(len(v) == 1 for v in study_map.values())
    assert all(len(v) == 1 for v in series_map.values())
    assert all(len(v) == 1 for v in study_ids.values())
    assert len({next(iter(v)) for v in study_map.values()}) == len(study_map)
    assert len(study_map) > 1 and any(
        sum(o.StudyInstanceUID == s for o in originals.values()) > 1 for s in study_map)


def test_phantom_date_intervals_within_a_patient_are_kept(phantom_exams, phantom_dataset):
    from datetime import date

    out, _, key = phantom_dataset
    originals, outputs = _originals(phantom_exams, key), _outputs(out)

    def day(text):
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    by_patient: dict[str, list[tuple[date, date]]] = {}
    for sha, original in originals.items():
        _, back = outputs[sha]
        by_patient.setdefault(original.PatientID, []).append(
            (day(original.StudyDate), day(back.StudyDate)))
    compared = 0
    for pairs in by_patient.values():
        shifts = {(new - old).days for old, new in pairs}
        assert len(shifts) == 1 and next(iter(shifts)) < 0
        compared += len({old for old, _ in pairs}) > 1
    assert compared, "the phantom should give a patient studies on two dates"


def test_phantom_burned_in_name_is_gone_from_the_pixels(phantom_exams, phantom_dataset):
    out, _, key = phantom_dataset
    originals, outputs = _originals(phantom_exams, key), _outputs(out)
    for sha, original in originals.items():
        row, back = outputs[sha]
        region = original.SequenceOfUltrasoundRegions[0]
        x0, y0 = region.RegionLocationMinX0, region.RegionLocationMinY0
        x1 = min(region.RegionLocationMaxX1 + 1, original.Columns)
        y1 = min(region.RegionLocationMaxY1 + 1, original.Rows)
        before = original.pixel_array
        before = before[0] if int(original.get("NumberOfFrames", 1)) > 1 else before
        after = back.pixel_array
        after = after[0] if int(back.get("NumberOfFrames", 1)) > 1 else after
        outside = np.ones(after.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert before[outside].any(), "the banner should be there before cleaning"
        assert not after[outside].any()
        png = np.asarray(Image.open(out / row["path"]))
        assert png.shape[:2] == (y1 - y0, x1 - x0)
        assert np.array_equal(png, after[y0:y1, x0:x1])
        assert float(row["pixel_spacing_mm_x"]) == pytest.approx(
            float(region.PhysicalDeltaX) * 10, rel=1e-5)
        assert row["label"] in {"1", "2", "3", "4", "5"}
