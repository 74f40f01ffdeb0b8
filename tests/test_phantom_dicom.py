"""The phantom's ultrasound DICOM exams: structure, regions, invented identity, private
tags, burned-in banner, transfer syntaxes, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (ExplicitVRLittleEndian, RLELossless, UltrasoundImageStorage,
                         UltrasoundMultiFrameImageStorage)

from eutirads.cli import main
from eutirads.phantom.dicom import IDENTITIES_NAME, PRIVATE_CREATOR, _plan, generate_dicom
from eutirads.phantom.identity import FAKE_NAMES
from eutirads.region import find_image_area

SEED = 16  # its 8 files mix patients, studies, series, cine, RGB, RLE (checked below)


@pytest.fixture(scope="module")
def exams(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dicom") / "exams"
    generate_dicom(out, n=8, seed=SEED, width=320, height=200, progress=False, workers=1)
    return out


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.dcm"))


def test_the_plan_mixes_patients_studies_series_cine_loops_rgb_and_rle():
    plan = _plan(120, SEED)
    assert len(plan) == 120
    assert len({p.patient for p in plan}) >= 10
    assert any(p.study > 0 for p in plan) and any(p.series > 0 for p in plan)
    assert any(p.frames > 1 for p in plan) and any(p.frames == 1 for p in plan)
    assert 0 < sum(p.rgb for p in plan) < 60 and 0 < sum(p.rle for p in plan) < 60


def test_files_read_back_as_ultrasound_in_class_folders(exams):
    files = _files(exams)
    assert len(files) == 8
    for file in files:
        ds = pydicom.dcmread(file)
        assert ds.Modality == "US" and file.parent.name in {"1", "2", "3", "4", "5"}
        assert ds.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, RLELossless)
        frames = int(ds.get("NumberOfFrames", 1))
        expected = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
        assert ds.SOPClassUID == expected
        pixels = ds.pixel_array
        shape = (200, 320, 3) if ds.PhotometricInterpretation == "RGB" else (200, 320)
        assert pixels.shape == ((frames, *shape) if frames > 1 else shape)
        assert ds.BurnedInAnnotation == "YES"


def test_ultrasound_regions_describe_the_image_area_in_centimetres(exams):
    for file in _files(exams):
        ds = pydicom.dcmread(file)
        (region,) = ds.SequenceOfUltrasoundRegions
        assert region.RegionSpatialFormat == 1
        assert region.PhysicalUnitsXDirection == 3 and region.PhysicalUnitsYDirection == 3
        assert 0.005 < region.PhysicalDeltaX < 0.05 and region.PhysicalDeltaY == region.PhysicalDeltaX
        frame = ds.pixel_array if int(ds.get("NumberOfFrames", 1)) == 1 else ds.pixel_array[0]
        found = find_image_area(frame)
        assert abs(found.x0 - region.RegionLocationMinX0) <= 2
        assert abs(found.y0 - region.RegionLocationMinY0) <= 2
        assert abs(found.x1 - 1 - region.RegionLocationMaxX1) <= 2
        assert abs(found.y1 - 1 - region.RegionLocationMaxY1) <= 2
        # The banner with the burned-in name lies above the region.
        assert frame[: region.RegionLocationMinY0].max() > 150


def test_files_carry_an_invented_identity_listed_in_the_identities_file(exams):
    document = json.loads((exams / IDENTITIES_NAME).read_text())
    listed = {p["patient_id"]: p for p in document["patients"]}
    studies = set()
    for file in _files(exams):
        ds = pydicom.dcmread(file)
        person = listed[ds.PatientID]
        assert str(ds.PatientName) == person["patient_name"] in FAKE_NAMES
        assert ds.PatientBirthDate == person["birth_date"]
        assert ds.InstitutionName == person["institution"]
        assert str(ds.ReferringPhysicianName) == person["referring_physician"]
        assert str(ds.OperatorsName) == person["operator"]
        assert ds.StationName == person["station_name"]
        assert ds.DeviceSerialNumber == person["device_serial"]
        assert ds.AccessionNumber in person["accession_numbers"]
        assert ds.StudyDate in person["study_dates"]
        studies.add(ds.StudyInstanceUID)
        block = ds.private_block(0x0009, PRIVATE_CREATOR)
        assert block[0x01].value == person["private_name"]
        assert block[0x02].value == ds.PatientID
    assert len(listed) >= 2 and len(studies) >= 2


def test_the_same_seed_gives_byte_identical_dicom_files(exams, tmp_path):
    again = tmp_path / "again"
    generate_dicom(again, n=8, seed=SEED, width=320, height=200, progress=False, workers=2)
    assert [f.relative_to(again) for f in _files(again)] == [f.relative_to(exams) for f in _files(exams)]
    for file in _files(exams):
        assert file.read_bytes() == (again / file.relative_to(exams)).read_bytes(), file
    assert (exams / IDENTITIES_NAME).read_bytes() == (again / IDENTITIES_NAME).read_bytes()


def test_the_files_mix_rle_and_uncompressed_monochrome_and_rgb_single_and_cine(exams):
    kinds = set()
    for file in _files(exams):
        ds = pydicom.dcmread(file)
        pixels = np.asarray(ds.pixel_array)
        assert pixels.dtype == np.uint8 and pixels.max() > 200
        kinds.add((ds.file_meta.TransferSyntaxUID == RLELossless, ds.PhotometricInterpretation,
                   int(ds.get("NumberOfFrames", 1)) > 1))
    assert {rle for rle, _, _ in kinds} == {True, False}
    assert {photometric for _, photometric, _ in kinds} == {"MONOCHROME2", "RGB"}
    assert {cine for _, _, cine in kinds} == {True, False}


def test_the_cli_writes_dicom_exams(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["phantom", str(out), "--dicom", "--n", "3", "--seed", "1", "--quiet",
                 "--width", "320", "--height", "200", "--workers", "1"]) == 0
    assert len(_files(out)) == 3 and (out / IDENTITIES_NAME).is_file()
    assert "3 DICOM files" in capsys.readouterr().out


def test_a_contact_sheet_can_be_drawn_from_dicom_exams(exams, tmp_path):
    from eutirads.imageio import load_rgb
    from eutirads.phantom import contact_sheet

    sheet = load_rgb(contact_sheet(exams, tmp_path / "sheet.png", per_class=2, tile_width=100))
    labels = {f.parent.name for f in _files(exams)}
    assert sheet.shape[0] > len(labels) * 60 and sheet.std() > 10
