"""De-identification you can prove (issue 11): burned-in text inside the image area, the
whole Annex E table from its machine-readable source, valid objects out (dciodvfy), no
orphan outputs, and a source hash nobody can link without the key."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicom_helpers import external_ultrasound_files, pydicom_file
from eutirads.cli import main
from eutirads.dicom import ingest, which
from eutirads.dicom.deidentify import deidentify_dataset, identity_of
from eutirads.dicom.keys import Keyring
from eutirads.dicom.profile import TABLE, effective_action
from eutirads.ocr import tesseract_available

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
needs_tesseract = pytest.mark.skipif(not tesseract_available(),
                                     reason="Debian's tesseract-ocr is not installed")
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                    reason="dciodvfy (Debian dicom3tools) is not installed")


# --- Annex E from the pinned CSV (item 3) ------------------------------------------------

def test_the_generated_profile_table_matches_the_pinned_csv():
    proc = subprocess.run(["python", str(ROOT / "scripts" / "generate_deid_profile.py"),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(ROOT / "src/eutirads/dicom/standards/ps3.15-2025c-table-E.1-1.csv",
              newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if re.match(r"^\([0-9A-F]{4},", r["Tag"])]
    assert len(TABLE) == len(rows) == 645
    assert TABLE[0x00080050][0] == "Z"  # Accession Number
    assert TABLE[0x00100030][0] == "Z"  # Patient's Birth Date
    assert TABLE[0x00080080][0] == "X/Z/D"  # Institution Name
    assert TABLE[0x00160072][0] == "X"  # GPS Latitude


_PLANT = {"PN": "SECRET^PLANTED", "LO": "SECRETLO", "SH": "SECRETSH", "LT": "SECRET LT",
          "ST": "SECRET ST", "UT": "SECRET UT", "UC": "SECRETUC", "CS": "SECRETCS",
          "AE": "SECRETAE", "UR": "http://secret.invalid/", "DA": "20010203",
          "TM": "010203", "DT": "20010203010203", "UI": "1.2.826.0.1.3680043.99.123",
          "IS": "424242", "DS": "4242.42", "AS": "042Y", "US": 4242, "SS": 4242,
          "UL": 424242, "SL": 424242, "FL": 42.42, "FD": 42.42, "OB": b"SECRETOB",
          "OW": b"SECRETOW", "UN": b"SECRETUN", "AT": 0x00100010}


def _plantable():
    """(tag, VR) of every Table E.1-1 attribute this pydicom can write."""
    out = []
    for tag in sorted(TABLE):
        if not keyword_for_tag(tag):
            continue  # newer than pydicom's dictionary: removed by the catch-all anyway
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ" or vr in _PLANT:
            out.append((tag, vr))
    return out


def _value(vr: str):
    if vr == "SQ":
        item = Dataset()
        item.PersonName = "SECRET^INSEQUENCE"
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = \
            "SECRETCV", "99SECRET", "SECRET MEANING"
        return Sequence([item])
    return _PLANT[vr]


def _planted_file(depths: list[str]) -> Dataset:
    """A US file with every table attribute at the top, inside a kept sequence's item
    (SequenceOfUltrasoundRegions) and two levels down (AnatomicRegionSequence >
    AnatomicRegionModifierSequence)."""
    ds = pydicom.dcmread(pydicom_file("OBXXXX1A.dcm"))
    modifier = Dataset()
    modifier.CodeValue, modifier.CodingSchemeDesignator, modifier.CodeMeaning = \
        "T-11503", "SRT", "Thyroid"
    anatomy = Dataset()
    anatomy.CodeValue, anatomy.CodingSchemeDesignator, anatomy.CodeMeaning = \
        "T-B6000", "SRT", "Thyroid"
    anatomy.AnatomicRegionModifierSequence = Sequence([modifier])
    ds.AnatomicRegionSequence = Sequence([anatomy])
    targets = {"top": ds, "region": ds.SequenceOfUltrasoundRegions[0], "deep": modifier}
    for tag, vr in _plantable():
        if tag in (0x00100010, 0x00100020):
            continue  # the pseudonym goes there
        for depth in depths:
            targets[depth].add_new(tag, vr, _value(vr))
    return ds


def _location(ds: Dataset, depth: str) -> Dataset | None:
    try:
        if depth == "top":
            return ds
        if depth == "region":
            return ds.SequenceOfUltrasoundRegions[0]
        return ds.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]
    except (AttributeError, IndexError):
        return None


def test_every_table_attribute_planted_at_every_depth_is_removed_emptied_or_replaced():
    keyring = Keyring(KEY)
    ds = _planted_file(["top", "region", "deep"])
    identity = identity_of(ds, keyring, fallback="x")
    out = deidentify_dataset(ds, keyring, identity)
    buffer = io.BytesIO()
    out.save_as(buffer, enforce_file_format=False)
    raw = buffer.getvalue()
    assert b"SECRET" not in raw and b"secret.invalid" not in raw
    checked = 0
    for depth in ("top", "region", "deep"):
        where = _location(out, depth)
        assert where is not None, f"the kept {depth} sequence itself must survive"
        for tag, vr in _plantable():
            if tag in (0x00100010, 0x00100020):
                continue
            checked += 1
            basic, dates, _desc, name = TABLE[tag]
            elem = where.get(Tag(tag))
            action = effective_action(basic, dates, vr)
            if elem is None:
                # Removed: what X asks, what a date that cannot be shifted gets, and what
                # the fixed rules do to command and file-meta groups.
                assert action in ("X", "C", "D") or Tag(tag).group in (0x0000, 0x0002), \
                    (depth, name, action)
                continue
            value = elem.value
            if vr == "SQ":
                if action == "S":  # references (X/Z/U*): kept, walked; nothing planted left
                    planted = {"SECRET^INSEQUENCE", "SECRETCV", "99SECRET", "SECRET MEANING"}
                    assert not any(str(e.value) in planted for item in value for e in item), \
                        (depth, name)
                else:
                    assert len(value) == 0, (depth, name)
            elif vr == "TM" and action in ("C", "CZ"):
                continue  # whole-day date shifts keep the time of day (Modified Dates)
            elif value not in (None, "", b""):
                assert value != _value(vr), (depth, name, action, value)
                assert action in ("D", "U", "C", "CZ"), (depth, name, action)
    assert checked > 3 * 500


def test_the_auditors_repro_attributes_and_procedure_codes_are_gone():
    """GPS, geographic location, performers with a person code, ethnic group, reason for
    the procedure and the study description copied into procedure code meanings."""
    ds = pydicom.dcmread(pydicom_file("OBXXXX1A.dcm"))
    ds.StudyDescription = "THYROID DOE JANE FOLLOW-UP"
    ds.GPSLatitude, ds.GPSLongitude = "52.5200", "13.4050"
    for keyword in ("ScheduledStationGeographicLocationCodeSequence",
                    "EthnicGroupCodeSequence", "ReasonForRequestedProcedureCodeSequence",
                    "ProcedureCodeSequence", "PerformedProtocolCodeSequence"):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = "X123", "99LOCAL"
        item.CodeMeaning = "THYROID DOE JANE FOLLOW-UP"
        setattr(ds, keyword, Sequence([item]))
    performer = Dataset()
    person = Dataset()
    person.CodeValue, person.CodingSchemeDesignator, person.CodeMeaning = \
        "E4711", "99STAFF", "Dr Smithers"
    performer.HumanPerformerCodeSequence = Sequence([person])
    performer.HumanPerformerName = "SMITHERS^WAYLON"
    ds.ActualHumanPerformersSequence = Sequence([performer])
    ds.PatientSize, ds.PatientSexNeutered = "1.83", "ALTERED"
    out = deidentify_dataset(ds, Keyring(KEY), identity_of(ds, Keyring(KEY), fallback="x"))
    buffer = io.BytesIO()
    out.save_as(buffer, enforce_file_format=False)
    raw = buffer.getvalue()
    for secret in (b"DOE JANE", b"52.5200", b"13.4050", b"E4711", b"Smithers", b"SMITHERS",
                   b"X123", b"1.83", b"ALTERED"):
        assert secret not in raw, secret
    for keyword in ("ScheduledStationGeographicLocationCodeSequence", "EthnicGroupCodeSequence",
                    "ReasonForRequestedProcedureCodeSequence", "ProcedureCodeSequence",
                    "PerformedProtocolCodeSequence", "ActualHumanPerformersSequence",
                    "GPSLatitude", "GPSLongitude", "StudyDescription"):
        assert keyword not in out, keyword


def test_type_2_attributes_are_emptied_not_removed():
    ds = pydicom.dcmread(pydicom_file("OBXXXX1A.dcm"))
    ds.StudyDate, ds.AccessionNumber, ds.PatientBirthDate = "2011xx25", "ACC1", "19700101"
    ds.PatientSex, ds.ReferringPhysicianName, ds.StudyID = "F", "WHO^DOCTOR", "ST1"
    out = deidentify_dataset(ds, Keyring(KEY), identity_of(ds, Keyring(KEY), fallback="x"))
    for keyword in ("StudyDate", "AccessionNumber", "PatientBirthDate", "PatientSex",
                    "ReferringPhysicianName", "StudyID"):
        assert keyword in out and out[keyword].value in (None, ""), keyword


# --- valid objects out (item 7) ----------------------------------------------------------

def _dciodvfy_errors(path: Path) -> set[str]:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return {" ".join(line.split()) for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Error")}


@needs_dciodvfy
def test_kept_dicom_passes_dciodvfy_with_no_error_the_source_did_not_have(tmp_path):
    from eutirads.phantom import generate_dicom

    src = tmp_path / "src"
    src.mkdir()
    for number, path in enumerate(external_ultrasound_files()):
        shutil.copy(path, src / f"{number:02d}.dcm")
    # Two deeper-than-8-bit grey objects of other modalities that come through too: a CT
    # (pydicom) and a DX with a region (deid-data): kept at their depth, rescale intact.
    shutil.copy(pydicom_file("CT_small.dcm"), src / "ct.dcm")
    cat = external_ultrasound_files()[-1].parent.parent / "animals" / "cat.dcm"
    if cat.is_file():
        shutil.copy(cat, src / "dx.dcm")
    generate_dicom(tmp_path / "phantom", n=6, seed=4, progress=False, workers=1)
    phantom = sorted((tmp_path / "phantom").rglob("*.dcm"))
    for path in phantom:
        assert _dciodvfy_errors(path) == set(), "the phantom's exams must be valid themselves"
    out, key = tmp_path / "ds", tmp_path / "key"
    report = ingest([src, tmp_path / "phantom"], out, key_path=key, frames="first",
                    keep_dicom=True, detect_region=True, workers=2, progress=False)
    assert report.done >= 20
    checked = set()
    for found in which([src, tmp_path / "phantom"], out, key_path=key):
        if found.status != "done":
            continue
        written = out / "dicom" / found.paths[0].split("/")[1] / f"{found.key_hash[:16]}.dcm"
        new = _dciodvfy_errors(written) - _dciodvfy_errors(Path(found.source.path))
        assert not new, (Path(found.source.path).name, sorted(new))
        if Path(found.source.path).name == "ct.dcm":
            back = pydicom.dcmread(written)
            assert back.BitsAllocated == 16 and "RescaleSlope" in back
        checked.add(found.key_hash)
    assert len(checked) == report.done  # two sources are byte-identical: one output


# --- burned-in text inside the area (item 2) ---------------------------------------------

def _name_mask(tmp_path: Path) -> tuple[Path, dict[int, np.ndarray]]:
    """Phantom exams with the name burned inside the area, and per InstanceNumber-free
    key (file index) the mask of the name's pixels (the difference with plain exams)."""
    from eutirads.phantom import generate_dicom

    generate_dicom(tmp_path / "plain", n=3, seed=8, progress=False, workers=1)
    generate_dicom(tmp_path / "named", n=3, seed=8, progress=False, workers=1,
                   name_in_area=True)
    masks = {}
    for plain in sorted((tmp_path / "plain").rglob("*.dcm")):
        named = tmp_path / "named" / plain.relative_to(tmp_path / "plain")
        a = pydicom.dcmread(plain).pixel_array.astype(int)
        b = pydicom.dcmread(named).pixel_array.astype(int)
        diff = np.abs(a - b)
        while diff.ndim > 2:  # frames, colour
            diff = diff.max(axis=0) if diff.ndim == 4 or diff.shape[-1] != 3 else \
                diff.max(axis=-1)
        masks[named.name] = diff > 40
        assert masks[named.name].sum() > 100
    return tmp_path / "named", masks


@needs_tesseract
def test_a_name_burned_inside_the_region_is_redacted_and_counted(tmp_path):
    named, masks = _name_mask(tmp_path)
    out, key = tmp_path / "ds", tmp_path / "key"
    report = ingest([named], out, key_path=key, frames="first", keep_dicom=True, workers=1,
                    progress=False)
    assert report.done == 3 and report.text_boxes_redacted >= 3
    for found in which([named], out, key_path=key):
        ds = pydicom.dcmread(found.source.path)
        region = ds.SequenceOfUltrasoundRegions[0]
        x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
        mask = masks[Path(found.source.path).name]
        png = np.asarray(Image.open(out / found.paths[0]))
        inside = mask[y0:y0 + png.shape[0], x0:x0 + png.shape[1]]
        assert inside.sum() > 100 and not png[inside].any()
        written = next((out / "dicom").rglob(f"{found.key_hash[:16]}.dcm"))
        back = pydicom.dcmread(written)
        assert back.BurnedInAnnotation == "NO"
        assert any(c.CodeValue == "113101" for c in back.DeidentificationMethodCodeSequence)
    rows = list(csv.DictReader(open(out / "manifest.csv", newline="")))
    assert all(int(r["text_boxes_redacted"]) >= 1 for r in rows)


@needs_tesseract
def test_text_policy_quarantine_holds_the_source_back_and_off_claims_nothing(tmp_path):
    named, _ = _name_mask(tmp_path)
    held = ingest([named], tmp_path / "q", key_path=tmp_path / "key", frames="first",
                  text_policy="quarantine", workers=1, progress=False)
    assert held.quarantined == {"burned-in-text": 3} and held.done == 0
    assert not list((tmp_path / "q").rglob("*.png"))
    off = ingest([named], tmp_path / "off", key_path=tmp_path / "key", frames="first",
                 keep_dicom=True, text_policy="off", workers=1, progress=False)
    assert off.done == 3 and off.text_boxes_redacted == 0
    for written in (tmp_path / "off" / "dicom").rglob("*.dcm"):
        back = pydicom.dcmread(written)
        assert back.BurnedInAnnotation == "YES"  # never NO without the check
        assert not any(c.CodeValue == "113101" for c in back.DeidentificationMethodCodeSequence)


# --- all or nothing per source (item 4) --------------------------------------------------

def test_a_source_whose_dicom_cannot_be_written_leaves_nothing_behind(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ds = pydicom.dcmread(pydicom_file("OBXXXX1A.dcm"))
    del ds.SOPInstanceUID
    ds.save_as(src / "no-uid.dcm", enforce_file_format=False)
    shutil.copy(pydicom_file("OBXXXX1A_rle.dcm"), src / "good.dcm")
    out = tmp_path / "ds"
    report = ingest([src], out, key_path=tmp_path / "key", keep_dicom=True, workers=1,
                    progress=False)
    assert report.done == 1 and report.quarantined == {"failed": 1}
    rows = list(csv.DictReader(open(out / "manifest.csv", newline="")))
    written = sorted(str(p.relative_to(out)) for p in (out / "images").rglob("*") if p.is_file())
    assert written == sorted(r["path"] for r in rows)  # no PNG without its manifest row
    assert len(list((out / "dicom").rglob("*.dcm"))) == 1
    assert not [p for p in out.rglob(".*.tmp")]


# --- keyed source hash and --which (item 5) ----------------------------------------------

def test_outputs_cannot_be_linked_to_their_source_without_the_key(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_file("OBXXXX1A.dcm"), src / "a.dcm")
    (src / "junk.dcm").write_bytes(b"junk" * 100)
    out = tmp_path / "ds"
    ingest([src], out, key_path=tmp_path / "key", keep_dicom=True, workers=1, progress=False)
    plain = {hashlib.sha256((src / n).read_bytes()).hexdigest() for n in ("a.dcm", "junk.dcm")}
    for file in out.rglob("*"):
        name = str(file.relative_to(out))
        content = file.read_bytes() if file.is_file() else b""
        for digest in plain:
            assert digest[:16] not in name and digest[:16].encode() not in content, name
    header = (out / "manifest.csv").read_text().splitlines()[0]
    assert "source_key_hash" in header and "source_sha256" not in header
    # Whoever holds the key and the files finds which output or record is theirs.
    code = main(["ingest", "--which", str(src / "a.dcm"), str(src / "junk.dcm"),
                 "--out", str(out), "--key", str(tmp_path / "key")])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0 and len(printed) == 2
    line_a = next(line for line in printed if line.startswith(str(src / "a.dcm")))
    assert "\tdone" in line_a and "images/" in line_a
    line_junk = next(line for line in printed if line.startswith(str(src / "junk.dcm")))
    assert "quarantined not-an-image" in line_junk
    # Without the dataset's key nothing is looked up.
    code = main(["ingest", "--which", str(src / "a.dcm"), "--out", str(out),
                 "--key", str(tmp_path / "other-key")])
    assert code == 2 and "key" in capsys.readouterr().err


def test_the_pinned_table_agrees_with_pydicoms_dictionary_where_both_know_the_tag():
    import pydicom.datadict

    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    known = unknown = 0
    for tag, (_basic, _dates, _desc, name) in TABLE.items():
        try:
            entry = pydicom.datadict.get_entry(tag)
        except KeyError:
            unknown += 1  # newer than this pydicom (the README names them)
            continue
        known += 1
        assert norm(entry[2]) == norm(name), (hex(tag), name, entry[2])
    assert (known, unknown) == (621, 24)
