"""A prediction as DICOM, for the clinic's PACS: a Structured Report and a Segmentation.

- SR: a TID 1500 Measurement Report (highdicom `Comprehensive3DSR`): one measurement group
  for the nodule with the EU-TIRADS category and the descriptors as qualitative
  evaluations, the long axis in mm as a measurement, the nodule's outline (or box) as an
  image region on the source frame, and the model's name and version as the algorithm.
  An abstained result records the abstention and its reason, without a category.
- SEG: when the prediction carries a localiser's mask, a binary DICOM Segmentation of the
  nodule on the source frame (highdicom `Segmentation`).

Both reference the source image's study, series and instance and carry its patient and
study identity, because a PACS files them with the exam by these: this is the one place
where eutirads writes identifying values, and only where the user points it (a folder given
with `--dicom-out`, or the PACS given with `--stow`). They are built in memory from the
source DICOM and never written into a dataset, logged, or kept after sending.

The category and descriptor codes use the local coding scheme `99EUTIRADS` (PS3.16 has no
EU-TIRADS codes); anatomy, finding and units use SNOMED CT, DCM and UCUM.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["build_sr", "build_seg", "build_results", "write_results", "send_results",
           "results_for_exam", "send_to_pacs", "seg_limit", "read_source", "CODING_SCHEME"]

CODING_SCHEME = "99EUTIRADS"
MANUFACTURER = "eutirads"
SR_SERIES_NUMBER, SEG_SERIES_NUMBER = 9901, 9902


def _codes():
    from pydicom.sr.coding import Code

    return {
        "procedure": Code("16310003", "SCT", "Ultrasonography"),
        "finding": Code("237495005", "SCT", "Thyroid nodule"),
        "site": Code("69748006", "SCT", "Thyroid structure"),
        "long_axis": Code("103339001", "SCT", "Long Axis"),
        "mm": Code("mm", "UCUM", "millimeter"),
        "category": Code("CATEGORY", CODING_SCHEME, "EU-TIRADS category"),
        "abstained": Code("ABSTAINED", CODING_SCHEME, "Result withheld by the model"),
        "abnormal": Code("49755003", "SCT", "Morphologically Abnormal Structure"),
    }


def _local(value: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(str(value), CODING_SCHEME, str(meaning)[:64])


def read_source(source) -> Any:
    """The source DICOM as a pydicom Dataset (from a Dataset, bytes or a path)."""
    import pydicom

    if isinstance(source, pydicom.Dataset):
        return source
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        name = "the DICOM" if isinstance(source, bytes) else str(source)
        raise InputError(f"{name}: not a readable DICOM file ({type(exc).__name__})") from None


def _algorithm(model_name: str, model_version: str):
    from highdicom.sr import AlgorithmIdentification

    return AlgorithmIdentification(name=model_name or "eutirads", version=model_version or "0")


def _frames(ds) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _outline(prediction) -> np.ndarray | None:
    """The nodule's outline (first region's contour, else its box) as closed (x, y) points."""
    nodule = getattr(prediction, "nodule", None) or {}
    regions = nodule.get("regions") or []
    contour = regions[0].get("contour") if regions else None
    if contour and len(contour) >= 3:
        points = np.asarray(contour, dtype=float)
    elif nodule.get("box"):
        x0, y0, x1, y1 = (float(v) for v in nodule["box"])
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    else:
        return None
    return np.vstack([points, points[:1]])  # closed polyline: last point = first


def _long_axis_mm(prediction) -> float | None:
    nodule = getattr(prediction, "nodule", None) or {}
    regions = nodule.get("regions") or []
    value = regions[0].get("long_axis_mm") if regions else None
    return float(value) if value else None


def build_sr(source, prediction, *, model_name: str, model_version: str):
    """The TID 1500 measurement report of `prediction` on the source image."""
    from highdicom.sr import (Comprehensive3DSR, DeviceObserverIdentifyingAttributes,
                              GraphicTypeValues, ImageRegion, Measurement, MeasurementReport,
                              MeasurementsAndQualitativeEvaluations, ObservationContext,
                              ObserverContext, PlanarROIMeasurementsAndQualitativeEvaluations,
                              QualitativeEvaluation, SourceImageForMeasurementGroup,
                              SourceImageForRegion, TrackingIdentifier)
    from pydicom.sr.codedict import codes as dcm_codes
    from pydicom.uid import generate_uid

    ds = read_source(source)
    code = _codes()
    algorithm = _algorithm(model_name, model_version)
    evaluations = []
    if getattr(prediction, "abstain", False):
        reason = prediction.abstain_reason or "abstained"
        evaluations.append(QualitativeEvaluation(code["abstained"],
                                                 _local(reason, reason.replace("-", " "))))
    else:
        if prediction.label is not None:
            evaluations.append(QualitativeEvaluation(
                code["category"], _local(prediction.label, prediction.name or prediction.label)))
        for name, entry in (getattr(prediction, "descriptors", None) or {}).items():
            value = entry.get("value") if isinstance(entry, dict) else entry
            if value:
                evaluations.append(QualitativeEvaluation(
                    _local(name, name.replace("_", " ")), _local(value, value.replace("_", " "))))
    measurements = []
    long_axis = _long_axis_mm(prediction)
    if long_axis is not None and not getattr(prediction, "abstain", False):
        measurements.append(Measurement(name=code["long_axis"], value=round(long_axis, 2),
                                        unit=code["mm"], algorithm_id=algorithm))
    frames = [1] if _frames(ds) > 1 else None
    tracking = TrackingIdentifier(uid=generate_uid(), identifier="thyroid nodule 1")
    outline = _outline(prediction)
    common = dict(tracking_identifier=tracking, finding_type=code["finding"],
                  algorithm_id=algorithm, measurements=measurements or None,
                  qualitative_evaluations=evaluations or None)
    if outline is not None:
        region = ImageRegion(graphic_type=GraphicTypeValues.POLYLINE, graphic_data=outline,
                             source_image=SourceImageForRegion(ds.SOPClassUID, ds.SOPInstanceUID,
                                                               referenced_frame_numbers=frames))
        group = PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)
    else:
        group = MeasurementsAndQualitativeEvaluations(
            source_images=[SourceImageForMeasurementGroup(ds.SOPClassUID, ds.SOPInstanceUID,
                                                          referenced_frame_numbers=frames)],
            **common)
    observer = ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=f"eutirads {model_name}"[:64],
            manufacturer_name=MANUFACTURER, model_name=(model_name or "eutirads")[:64]))
    report = MeasurementReport(observation_context=ObservationContext(
                                   observer_device_context=observer),
                               procedure_reported=code["procedure"],
                               imaging_measurements=[group])
    return Comprehensive3DSR(evidence=[ds], content=report[0], series_instance_uid=generate_uid(),
                             series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(),
                             instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
                             is_final=False, is_verified=False)


def build_seg(source, mask: np.ndarray, *, model_name: str, model_version: str):
    """A binary Segmentation of the nodule `mask` (HxW, nonzero = nodule) on the source's
    first frame."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    ds = read_source(source)
    mask = np.asarray(mask)
    if mask.shape != (int(ds.Rows), int(ds.Columns)):
        raise InputError(f"the nodule mask ({mask.shape[1]}x{mask.shape[0]}) does not match the "
                         f"image ({ds.Columns}x{ds.Rows})")
    if not mask.any():
        raise InputError("the nodule mask is empty: no segmentation to send")
    # One frame: the prediction was made on the first frame, and highdicom (like the
    # standard) needs a frame of reference, which ultrasound cines lack, for more.
    pixels = mask > 0
    code = _codes()
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="thyroid nodule",
        segmented_property_category=code["abnormal"], segmented_property_type=code["finding"],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=model_name or "eutirads", version=model_version or "0",
            family=_ai_family()))
    return hd.seg.Segmentation(
        source_images=[ds], pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=(model_name or "eutirads")[:64],
        software_versions=(model_version or "0")[:64], device_serial_number="0")


def _ai_family():
    from pydicom.sr.coding import Code

    return Code("123110", "DCM", "Artificial Intelligence")


def build_results(source, prediction, *, model_name: str, model_version: str,
                  mask: np.ndarray | None = None) -> list:
    """[SR] or [SR, SEG]: the SEG when a nodule mask is given or the prediction has one."""
    ds = read_source(source)
    results = [build_sr(ds, prediction, model_name=model_name, model_version=model_version)]
    mask = mask if mask is not None else getattr(prediction, "mask", None)
    if mask is not None and np.asarray(mask).any() and not getattr(prediction, "abstain", False) \
            and seg_limit(ds) is None:
        results.append(build_seg(ds, mask, model_name=model_name, model_version=model_version))
    return results


def seg_limit(source) -> str | None:
    """Why no SEG can be made on this source (None: it can). A Segmentation of one frame of
    a cine needs a frame of reference, which ultrasound cines lack (highdicom refuses it)."""
    ds = read_source(source)
    if _frames(ds) > 1 and "FrameOfReferenceUID" not in ds:
        return "no SEG for a cine without a frame of reference (the SR references frame 1)"
    return None


def write_results(datasets: Sequence, folder: str | os.PathLike[str], *, index: int = 1
                  ) -> list[Path]:
    """Write them as `sr_0001.dcm`, `seg_0001.dcm` (named by position, never by a DICOM
    value) into `folder`, owner-only; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        kind = "seg" if ds.Modality == "SEG" else "sr"
        path = folder / f"{kind}_{index:04d}.dcm"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            ds.save_as(handle, enforce_file_format=True)
        paths.append(path)
    return paths


def send_results(datasets: Sequence, url: str, *, session=None) -> None:
    """STOW-RS to the PACS at `url` (DICOMweb root; credentials as for `ingest --dicomweb`).
    An unreachable or refusing PACS is an InputError naming the URL and the reason only."""
    from .dicomweb import _client, _why, public_url

    client = _client(url, session)
    try:
        client.store_instances(datasets=list(datasets))
    except Exception as exc:
        raise InputError(f"{public_url(url)}: the PACS did not store the results "
                         f"({_why(exc)})") from None


def results_for_exam(predictor, exam, *, prediction=None, box=None, dicom_out=None,
                     stow: str | None = None, index: int = 1, session=None) -> dict[str, Any]:
    """Predict one DICOM exam (or use `prediction`), build its SR (and SEG), write them to
    `dicom_out` and/or send them to `stow`. For callers such as the diagnosis page's "send
    to PACS": nothing is kept once this returns. Returns {"written": [paths], "sent": n}."""
    from ..inference import load_image

    ds = read_source(exam)
    if prediction is None:
        if isinstance(exam, (bytes, bytearray)) or not isinstance(exam, (str, os.PathLike)):
            raise InputError("results_for_exam: give the exam as a path, or a prediction")
        prediction = predictor.predict(load_image(exam), box=box)
    meta = getattr(predictor, "metadata", {}) or {}
    datasets = build_results(ds, prediction, model_name=str(meta.get("name", "eutirads")),
                             model_version=str(meta.get("version", "0")))
    out: dict[str, Any] = {"written": [], "sent": 0, "kinds": [d.Modality for d in datasets],
                           "note": seg_limit(ds) if getattr(prediction, "mask", None) is not None
                           else None}
    if dicom_out is not None:
        out["written"] = write_results(datasets, dicom_out, index=index)
    if stow:
        send_results(datasets, stow, session=session)
        out["sent"] = len(datasets)
    return out


def send_to_pacs(dicom_bytes: bytes, result, *, model_name: str, model_version: str,
                 url: str, session=None) -> list[str]:
    """The diagnosis page's "send to PACS": the SR (and SEG, when `result` has a mask) of
    one uploaded DICOM, built in memory and sent by STOW-RS to `url`; `result` is a
    `Prediction` or a `Diagnosis` (same fields). Returns the modalities sent ("SR", "SEG")."""
    from ..dicom.reading import looks_like_dicom

    if not looks_like_dicom(dicom_bytes):
        raise InputError("only a DICOM upload can be sent to the PACS (its study and patient "
                         "identify where the result belongs)")
    datasets = build_results(dicom_bytes, result, model_name=model_name,
                             model_version=model_version)
    send_results(datasets, url, session=session)
    return [d.Modality for d in datasets]
