"""The diagnosis page's "send to PACS" (EUTIRADS_PACS_URL): the SR of an uploaded DICOM is
stored by a real Orthanc in the exam's study; a PNG is refused with the reason; without a
configured PACS the option is not offered."""

from __future__ import annotations

import io

import pydicom
import pytest

from diagnosis_fixtures import *  # noqa: F401,F403 - fixtures
from tests.pacs_fixtures import ORTHANC_PASSWORD, ORTHANC_USER, exam_files

pytestmark = pytest.mark.django_db


def _upload(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


@pytest.fixture
def pacs(settings, orthanc, monkeypatch):
    settings.PACS_STOW_URL = orthanc.dicomweb
    monkeypatch.setenv("EUTIRADS_DICOMWEB_USER", ORTHANC_USER)
    monkeypatch.setenv("EUTIRADS_DICOMWEB_PASSWORD", ORTHANC_PASSWORD)
    return orthanc


def test_a_dicom_upload_sent_to_the_pacs_lands_in_its_study(rad_client, active_bundle, pacs,
                                                            phantom_exams):
    exam = next(p for p in exam_files(phantom_exams)
                if int(pydicom.dcmread(p, stop_before_pixels=True).get("NumberOfFrames", 1)) == 1)
    study = str(pydicom.dcmread(exam, stop_before_pixels=True).StudyInstanceUID)
    before = len(pacs.get(f"/dicom-web/studies/{study}/series?Modality=SR").json() or [])
    assert 'name="send_to_pacs"' in rad_client.get("/diagnosis/").content.decode()
    response = rad_client.post("/diagnosis/", {"image": _upload(exam.read_bytes(), "exam.dcm"),
                                               "send_to_pacs": "1"})
    page = response.content.decode()
    assert response.status_code == 200 and "Sent to the PACS: SR" in page, page[:2000]
    after = pacs.get(f"/dicom-web/studies/{study}/series?Modality=SR").json()
    assert len(after) == before + 1


def test_a_png_is_not_sent_and_the_page_says_why(rad_client, active_bundle, pacs):
    import diagnosis_samples as samples

    response = rad_client.post("/diagnosis/", {"image": _upload(samples.png_bytes(), "a.png"),
                                               "send_to_pacs": "1"})
    assert "Not sent to the PACS: only a DICOM upload" in response.content.decode()


def test_without_a_pacs_the_option_is_not_offered(rad_client, active_bundle, settings):
    settings.PACS_STOW_URL = ""
    assert 'name="send_to_pacs"' not in rad_client.get("/diagnosis/").content.decode()
