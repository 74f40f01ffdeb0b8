"""Ultrasound DICOM exams of phantom patients: the input that DICOM ingest must
de-identify.

Each patient has one or two studies, each study one or two series, each series one or
two instances; about a third of the instances are cine loops (US Multi-frame). Every
file carries a realistic but invented identity in the usual tags, the patient's name
again in private tags, and the name burned into the pixel banner outside the
ultrasound region (BurnedInAnnotation YES). SequenceOfUltrasoundRegions describes the
image area with its pixel spacing in cm. Most files are explicit VR little endian,
some RLE Lossless; most MONOCHROME2, some RGB. Files go into class folders 1/..5/ (the
patient's category), named by index only, and `phantom_identities.json` lists every
invented identifying value used.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .identity import fake_identity
from ..parallel import map_in_order, worker_count
from .dataset import check_options, prepare_output, render_example
from .screen import colorize

__all__ = ["DicomReport", "generate_dicom", "IDENTITIES_NAME", "PRIVATE_CREATOR"]

IDENTITIES_NAME = "phantom_identities.json"
PRIVATE_CREATOR = "EUTIRADS PHANTOM 1.0"
PRIVATE_GROUP = 0x0009
INSTITUTION_ADDRESS = "1 Nowhere Street, Fictionville"


@dataclass(frozen=True)
class DicomReport:
    files: int
    frames: int
    patients: int
    studies: int
    series: int
    identities: Path


@dataclass(frozen=True)
class _Instance:
    """One file to write, planned up front so that workers need nothing shared."""

    index: int
    patient: int
    study: int
    series: int
    number: int          # InstanceNumber within the series
    view: int            # view index within the patient
    frames: int
    rgb: bool
    rle: bool


def _plan(n: int, seed: int) -> list[_Instance]:
    """Patients, studies, series and instances until `n` files are planned."""
    plan: list[_Instance] = []
    patient = 0
    while len(plan) < n:
        rng = np.random.default_rng([seed, patient, 7])
        view = 0
        for study in range(1 + int(rng.random() < 0.35)):
            for series in range(1 + int(rng.random() < 0.4)):
                for number in range(int(rng.integers(1, 3))):
                    if len(plan) >= n:
                        return plan
                    cine = rng.random() < 0.3
                    plan.append(_Instance(
                        index=len(plan), patient=patient, study=study, series=series,
                        number=number + 1, view=view,
                        frames=int(rng.integers(4, 9)) if cine else 1,
                        rgb=bool(rng.random() < 0.35), rle=bool(rng.random() < 0.25)))
                    view += 1
        patient += 1
    return plan


def _uid(seed: int, *parts: object) -> str:
    from pydicom.uid import generate_uid

    # Derived from the seed and the position, so the same seed gives the same files.
    return generate_uid(entropy_srcs=["eutirads-phantom", str(seed), *map(str, parts)])


def _accession(seed: int, patient: int, study: int) -> str:
    return f"ACCFAKE{(seed * 7919 + patient * 101 + study) % 10_000_000:07d}"


def _burn_name_in_area(screen: np.ndarray, mask: np.ndarray, name: str, box) -> tuple:
    """The screen (and annotation mask) with the patient's name written inside the image
    area too, as some scanners do with a measurement label: what the text check must find."""
    from PIL import Image, ImageDraw

    from .screen import TEXT_GRAY, _font

    font = _font(max(10, box.height // 14))
    where = (box.x0 + box.width // 8, box.y0 + box.height // 6)
    image, overlay = Image.fromarray(screen.copy()), Image.fromarray(mask.copy())
    for target in (image, overlay):
        ImageDraw.Draw(target).text(where, name, fill=TEXT_GRAY, font=font)
    return np.asarray(image), np.asarray(overlay)


def _dataset(job: _Instance, seed: int, width: int, height: int, balance: str,
             name_in_area: bool = False):
    """The pydicom dataset of one planned instance, pixels included."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import (ExplicitVRLittleEndian, RLELossless, UltrasoundImageStorage,
                             UltrasoundMultiFrameImageStorage)

    frames = [render_example(seed, job.patient, job.view, width=width, height=height,
                             balance=balance, frame=f, study=job.study)
              for f in range(job.frames)]
    first = frames[0]
    ident, notes, box = first.identity, first.notes, first.image_box
    screens = [(e.screen, e.annotation_mask) for e in frames]
    if name_in_area:
        screens = [_burn_name_in_area(screen, mask, notes.name, box)
                   for screen, mask in screens]
    pixels = np.stack([colorize(screen, mask) if job.rgb else screen
                       for screen, mask in screens])
    multi = job.frames > 1
    sop_class = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    sop_uid = _uid(seed, "sop", job.index)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "0001"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    date = notes.date.replace("-", "")
    time = notes.time.replace(":", "")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AcquisitionDateTime = date + time
    ds.AccessionNumber = _accession(seed, job.patient, job.study)
    ds.Modality = "US"
    ds.PatientOrientation = ""  # Type 2C in General Image: present, empty (no orientation)
    ds.Manufacturer = "Phantom Imaging (invented)"
    ds.ManufacturerModelName = "PhantomScan 9"
    ds.SoftwareVersions = "1.0"
    ds.InstitutionName = ident.institution
    ds.InstitutionAddress = INSTITUTION_ADDRESS
    ds.ReferringPhysicianName = ident.referring_physician
    ds.OperatorsName = ident.operator
    ds.PerformingPhysicianName = ident.referring_physician
    ds.StationName = ident.station_name
    ds.DeviceSerialNumber = ident.device_serial
    ds.StudyDescription = "US THYROID"
    ds.SeriesDescription = f"THYROID {notes.side} TRANS"
    ds.BodyPartExamined = "THYROID"
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.PatientBirthDate = ident.birth_date
    ds.PatientSex = ident.sex
    ds.PatientAge = f"{int(date[:4]) - int(ident.birth_date[:4]):03d}Y"
    ds.OtherPatientIDs = f"{ident.patient_id}-B"
    ds.StudyInstanceUID = _uid(seed, "study", job.patient, job.study)
    ds.SeriesInstanceUID = _uid(seed, "series", job.patient, job.study, job.series)
    ds.StudyID = f"{job.study + 1}"
    ds.SeriesNumber = job.series + 1
    ds.InstanceNumber = job.number
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    ds.TransducerData = [notes.probe, "", ""]
    ds.TransducerType = "LINEAR"  # the type of probe: linear arrays for thyroid

    region = Dataset()
    region.RegionSpatialFormat = 1        # 2D tissue image
    region.RegionDataType = 1             # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = box.x0
    region.RegionLocationMinY0 = box.y0
    region.RegionLocationMaxX1 = box.x1 - 1   # DICOM's max corner is inclusive
    region.RegionLocationMaxY1 = box.y1 - 1
    region.PhysicalUnitsXDirection = 3    # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 1.0 / first.px_per_cm
    region.PhysicalDeltaY = 1.0 / first.px_per_cm
    region.ReferencePixelX0 = box.width // 2
    region.ReferencePixelY0 = 0
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    region.TransducerFrequency = notes.frequency_mhz * 1000  # kHz
    ds.SequenceOfUltrasoundRegions = Sequence([region])

    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", ident.patient_name.replace("^", " "))
    block.add_new(0x02, "LO", ident.patient_id)
    block.add_new(0x03, "DA", ident.birth_date)
    block.add_new(0x04, "LO", ident.institution)

    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if job.rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    if multi:
        ds.NumberOfFrames = job.frames
        ds.FrameTime = round(1000.0 / notes.frame_rate, 1)
        ds.CineRate = notes.frame_rate
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
    data = pixels if multi else pixels[0]
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    if job.rle:
        ds.compress(RLELossless, generate_instance_uid=False)
    return ds, first.case.label


def _write_instance(job: tuple) -> dict[str, object]:
    out, seed, width, height, balance, instance, name_in_area = job
    ds, label = _dataset(instance, seed, width, height, balance, name_in_area)
    path = Path(out) / str(label) / f"us_{instance.index:05d}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".us-", suffix=".dcm", dir=path.parent)
    os.close(fd)
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"patient": instance.patient, "study": instance.study, "series": instance.series,
            "frames": instance.frames, "label": label,
            "accession": str(ds.AccessionNumber), "study_date": str(ds.StudyDate),
            "study_uid": str(ds.StudyInstanceUID)}


def generate_dicom(out: str | os.PathLike[str], *, n: int, seed: int, width: int = 560,
                   height: int = 360, balance: str = "equal", images_per_patient: int = 1,
                   progress: bool = True, workers: int | None = None,
                   overwrite: bool = False, name_in_area: bool = False) -> DicomReport:
    """Write `n` ultrasound DICOM files (single images and cine loops) of phantom patients
    into class folders of `out`, plus `phantom_identities.json`. `images_per_patient` is
    accepted for symmetry with `generate_dataset`; the exam structure decides how many
    files each patient gets. `name_in_area` also burns the patient's name inside the
    ultrasound image area (not only in the banner around it)."""
    del images_per_patient
    check_options(n=n, width=width, height=height, balance=balance)
    root = prepare_output(out, overwrite=overwrite)
    plan = _plan(int(n), int(seed))
    jobs = [(str(root), int(seed), width, height, balance, instance, name_in_area)
            for instance in plan]
    try:
        results = map_in_order(_write_instance, jobs,
                               workers=worker_count(workers, len(jobs) * 3),
                               progress=progress, desc="phantom DICOM")
    except OSError as exc:  # disk full, folder removed or made read-only meanwhile
        raise InputError(f"{root}: cannot write ({exc.strerror or exc})") from None

    patients: dict[int, dict] = {}
    for item in results:
        patients.setdefault(item["patient"], {"accession_numbers": set(), "study_dates": set(),
                                              "study_instance_uids": set()})
        entry = patients[item["patient"]]
        entry["accession_numbers"].add(item["accession"])
        entry["study_dates"].add(item["study_date"])
        entry["study_instance_uids"].add(item["study_uid"])
    listing = []
    for patient in sorted(patients):
        identity = fake_identity(np.random.default_rng([seed, patient, 1]), patient)
        values = identity.to_dict()
        del values["sex"]  # not identifying on its own; kept out so tests can demand absence
        listing.append({
            **values, "banner_name": identity.display_name,
            "other_patient_id": f"{identity.patient_id}-B",
            "private_name": identity.patient_name.replace("^", " "),
            "institution_address": INSTITUTION_ADDRESS,
            **{key: sorted(values) for key, values in patients[patient].items()}})
    identities = root / IDENTITIES_NAME
    document = {
        "note": "Every value here is invented for the phantom; none belongs to a person.",
        "private_creator": PRIVATE_CREATOR,
        "patients": listing,
    }
    try:
        tmp = identities.with_name(f".{identities.name}.tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, identities)
    except OSError as exc:
        raise InputError(f"{identities}: cannot write ({exc.strerror or exc})") from None
    studies = {(r["patient"], r["study"]) for r in results}
    series = {(r["patient"], r["study"], r["series"]) for r in results}
    return DicomReport(files=len(results), frames=sum(int(r["frames"]) for r in results),
                       patients=len(patients), studies=len(studies), series=len(series),
                       identities=identities)
