"""Results back to the PACS: a TID 1500 SR (category, descriptors, long axis, algorithm) and a
SEG of the nodule, both referencing the source exam, parse with highdicom; an abstention
gives an SR without a category; `predict --dicom-out --stow` writes them and Orthanc stores
them (read back over DICOMweb)."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
import pytest

from eutirads.cli import main
from eutirads.inference.predictor import Prediction
from eutirads.pacs.dicomweb import dicomweb_session
from eutirads.pacs.results import build_results, send_results, write_results
from tests.pacs_fixtures import ORTHANC_PASSWORD, ORTHANC_USER, exam_files, free_port

from model_helpers import tiny_bundle

MODEL, VERSION = "tiny-model", "v0123abcd"


def _exam(root, cine: bool = False):
    for path in exam_files(root):
        if (int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1)) > 1) == cine:
            return path
    raise AssertionError("no such exam in the phantom set")


def _prediction(ds, *, abstain: bool = False) -> Prediction:
    mask = np.zeros((int(ds.Rows), int(ds.Columns)), np.uint8)
    mask[80:120, 100:160] = 255
    region = {"box": [100, 80, 160, 120], "area_px": 2400, "long_axis_px": 60,
              "short_axis_px": 40, "long_axis_mm": 12.5, "short_axis_mm": 8.3,
              "contour": [[100, 80], [159, 80], [159, 119], [100, 119]]}
    return Prediction(label="4", name="EU-TIRADS 4: Intermediate risk",
                      probabilities={"3": 0.2, "4": 0.7, "5": 0.1}, crop_box=(0, 0, 320, 200),
                      nodule={"box": region["box"], "score": 0.9, "regions": [region]},
                      box_source="localiser", localised=True, mask=mask,
                      descriptors={"composition": {"value": "solid"},
                                   "echogenicity": {"value": "markedly_hypoechoic"}},
                      abstain=abstain, abstain_reason="low-confidence" if abstain else None)


def _items(ds):
    """Every content item of an SR, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _coded(ds) -> dict[str, str]:
    """concept code value -> coded value (CODE items) of an SR."""
    def value(code) -> str:
        return code.get("CodeValue") or code.get("LongCodeValue")  # long ones: LongCodeValue

    return {value(i.ConceptNameCodeSequence[0]): value(i.ConceptCodeSequence[0])
            for i in _items(ds) if i.ValueType == "CODE"}


def _reread(ds):
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return buffer


def test_the_sr_and_seg_reference_the_source_and_carry_the_result(phantom_exams, tmp_path):
    source = pydicom.dcmread(_exam(phantom_exams))
    sr, seg = build_results(source, _prediction(source), model_name=MODEL, model_version=VERSION)
    paths = write_results([sr, seg], tmp_path / "out")
    assert [p.name for p in paths] == ["sr_0001.dcm", "seg_0001.dcm"]

    report = hd.sr.srread(paths[0])
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID"):
        assert report.get(keyword) == source.get(keyword)
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    referenced = evidence.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert report.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    coded = _coded(report)
    assert coded["CATEGORY"] == "4"
    assert coded["composition"] == "solid" and coded["echogenicity"] == "markedly_hypoechoic"
    lengths = [i for i in _items(report) if i.ValueType == "NUM"]
    assert float(lengths[0].MeasuredValueSequence[0].NumericValue) == pytest.approx(12.5)
    texts = {str(i.TextValue) for i in _items(report) if i.ValueType == "TEXT"}
    assert MODEL in texts and VERSION in texts  # the algorithm's name and version
    regions = [i for i in _items(report) if i.ValueType == "SCOORD"]
    assert regions[0].ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
        source.SOPInstanceUID

    segmentation = hd.seg.segread(paths[1])
    assert segmentation.StudyInstanceUID == source.StudyInstanceUID
    assert segmentation.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0] \
        .ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert segmentation.get_segment_description(1).segment_label == "thyroid nodule"
    assert np.array_equal(np.squeeze(segmentation.pixel_array) > 0, _prediction(source).mask > 0)


def test_an_abstention_gives_an_sr_with_its_reason_and_no_category(phantom_exams):
    source = pydicom.dcmread(_exam(phantom_exams))
    results = build_results(source, _prediction(source, abstain=True), model_name=MODEL,
                            model_version=VERSION)
    assert [d.Modality for d in results] == ["SR"]  # no segmentation offered as advice
    coded = _coded(hd.sr.srread(_reread(results[0])))
    assert coded["ABSTAINED"] == "low-confidence" and "CATEGORY" not in coded
    assert not any(i.ValueType == "NUM" for i in _items(results[0]))


def test_a_cine_gets_an_sr_referencing_its_first_frame_and_no_seg(phantom_exams):
    source = pydicom.dcmread(_exam(phantom_exams, cine=True))
    results = build_results(source, _prediction(source), model_name=MODEL, model_version=VERSION)
    assert [d.Modality for d in results] == ["SR"]
    region = [i for i in _items(results[0]) if i.ValueType == "SCOORD"][0]
    assert int(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber) == 1


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("sr") / "bundle")


def _stored(orthanc, study: str, modality: str) -> list:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb, session=dicomweb_session(
        {"EUTIRADS_DICOMWEB_USER": ORTHANC_USER, "EUTIRADS_DICOMWEB_PASSWORD": ORTHANC_PASSWORD}))
    found = []
    for series in client.search_for_series(study, search_filters={"Modality": modality}):
        found += client.retrieve_series(study, series["0020000E"]["Value"][0])
    return found


def test_predict_writes_the_sr_and_stow_rs_stores_it_and_the_seg_in_orthanc(
        bundle, orthanc, phantom_exams, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EUTIRADS_DICOMWEB_USER", ORTHANC_USER)
    monkeypatch.setenv("EUTIRADS_DICOMWEB_PASSWORD", ORTHANC_PASSWORD)
    exam = _exam(phantom_exams)
    source = pydicom.dcmread(exam)
    code = main(["predict", str(bundle), str(exam), "--dicom-out", str(tmp_path / "out"),
                 "--stow", orthanc.dicomweb, "--json"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "sr_0001.dcm").is_file()
    stored = _stored(orthanc, str(source.StudyInstanceUID), "SR")
    assert stored, "Orthanc holds no SR for the exam's study"
    report = hd.sr.srread(_reread(stored[-1]))
    assert report.SeriesInstanceUID != source.SeriesInstanceUID  # a series of its own
    assert _coded(report)["CATEGORY"] in ("3", "4", "5")

    # The localiser's mask (here the test's) becomes a SEG that Orthanc stores too.
    sr, seg = build_results(source, _prediction(source), model_name=MODEL, model_version=VERSION)
    send_results([sr, seg], orthanc.dicomweb)
    segs = _stored(orthanc, str(source.StudyInstanceUID), "SEG")
    assert hd.seg.segread(_reread(segs[-1])).get_segment_description(1).segment_label == \
        "thyroid nodule"


def test_a_png_or_an_unreachable_pacs_is_a_one_line_error_and_the_batch_goes_on(
        bundle, phantom_exams, tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "Doe^Jane.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(png)
    exam = _exam(phantom_exams)
    closed = f"http://127.0.0.1:{free_port()}/dicom-web"
    code = main(["predict", str(bundle), str(png), str(exam), "--dicom-out",
                 str(tmp_path / "out"), "--stow", closed])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("eutirads: error:")]
    assert len(errors) == 2
    assert "not a readable DICOM file" in errors[0]
    assert "the PACS did not store the results (ConnectionError)" in errors[1]
    assert (tmp_path / "out" / "sr_0002.dcm").is_file()  # written before the send failed
    source = pydicom.dcmread(exam, stop_before_pixels=True)
    assert str(source.PatientName) not in captured.err + captured.out


def test_results_for_exam_takes_the_upload_bytes_and_a_prediction_made_elsewhere(
        phantom_exams, tmp_path):
    """The diagnosis page's "send to PACS" path: bytes in memory, a prediction it already has."""
    from types import SimpleNamespace

    from eutirads.pacs.results import results_for_exam

    exam = _exam(phantom_exams)
    source = pydicom.dcmread(exam)
    predictor = SimpleNamespace(metadata={"name": MODEL, "version": VERSION})
    done = results_for_exam(predictor, exam.read_bytes(), prediction=_prediction(source),
                            dicom_out=tmp_path / "out")
    assert done["kinds"] == ["SR", "SEG"] and done["sent"] == 0
    assert [p.name for p in done["written"]] == ["sr_0001.dcm", "seg_0001.dcm"]
    texts = {str(i.TextValue) for i in _items(hd.sr.srread(done["written"][0]))
             if i.ValueType == "TEXT"}
    assert MODEL in texts and VERSION in texts


def test_a_bundle_with_a_localiser_gives_an_sr_with_the_outline_and_a_seg_of_its_mask(
        phantom_exams, tmp_path, capsys):
    """End to end through the real predictor: the localiser's mask (Prediction.mask) becomes
    the SEG, its region the SR's outline."""
    pytest.importorskip("torch", reason="building a bundle needs the training extra")
    from tests.web.diagnosis_fixtures import build_full_bundle

    bundle = build_full_bundle(tmp_path / "full")
    from eutirads.inference import Predictor, load_image

    for exam in exam_files(phantom_exams):
        source = pydicom.dcmread(exam)
        if int(source.get("NumberOfFrames", 1)) > 1:
            continue
        result = Predictor(bundle).predict(load_image(exam))
        if result.mask is not None and result.mask.any() and not result.abstain:
            break
    else:
        pytest.fail("the localiser found no nodule on any single-frame phantom exam")
    assert main(["predict", str(bundle), str(exam), "--dicom-out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    segmentation = hd.seg.segread(tmp_path / "out" / "seg_0001.dcm")
    assert np.array_equal(np.squeeze(segmentation.pixel_array) > 0, result.mask > 0)
    report = hd.sr.srread(tmp_path / "out" / "sr_0001.dcm")
    assert any(i.ValueType == "SCOORD" for i in _items(report))
    assert segmentation.SOPInstanceUID != source.SOPInstanceUID
