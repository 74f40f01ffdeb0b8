"""`eutirads ingest --dicomweb`: a pull from a real Orthanc (DICOMweb plugin) ingests the same
exams as files on disk would; it resumes per study, survives a study failing halfway, and
an unreachable or refusing PACS is a one-line error. Nothing identifying is printed."""

from __future__ import annotations

import csv
import logging

import pydicom
import pytest

from eutirads.cli import main
from eutirads.dicom import ingest
from eutirads.pacs.dicomweb import dicomweb_session, pull
from tests.pacs_fixtures import (ORTHANC_PASSWORD, ORTHANC_USER, assert_nothing_identifying,
                                 exam_files, free_port, identifying_values)

pytestmark = pytest.mark.slow


def _identities(dataset) -> set[tuple[str, ...]]:
    with open(dataset / "manifest.csv", newline="") as handle:
        return {(r["patient_id"], r["study_id"], r["series_id"], r["frame"])
                for r in csv.DictReader(handle)}


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("EUTIRADS_DICOMWEB_USER", ORTHANC_USER)
    monkeypatch.setenv("EUTIRADS_DICOMWEB_PASSWORD", ORTHANC_PASSWORD)


def _studies(exams) -> list[str]:
    return sorted({str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
                   for p in exam_files(exams)})


def test_a_pull_from_orthanc_ingests_the_same_exams_and_a_rerun_skips_them(
        orthanc, phantom_exams, credentials, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out, key = tmp_path / "ds", tmp_path / "deid.key"
    args = ["-v", "ingest", "--dicomweb", orthanc.dicomweb, "--out", str(out), "--key", str(key),
            "--modality", "US", "--since", "2000-01-01"]
    assert main(args) == 0
    first = capsys.readouterr()
    studies = len(_studies(phantom_exams))
    assert f"dicomweb: {studies} studies: {studies} pulled" in first.out

    direct = tmp_path / "direct"
    ingest([phantom_exams], direct, key_path=key, workers=1, progress=False)
    assert _identities(out) == _identities(direct)

    assert main(args) == 0
    again = capsys.readouterr()
    assert f"0 pulled (0 instances), {studies} already done" in again.out
    state = (out / ".ingest" / "dicomweb.json").read_text()
    assert_nothing_identifying(identifying_values(phantom_exams), first.out, first.err,
                               again.out, again.err, caplog.text, state,
                               (out / "manifest.csv").read_text())


def test_study_and_since_select_what_is_pulled(orthanc, phantom_exams, tmp_path):
    session = dicomweb_session({"EUTIRADS_DICOMWEB_USER": ORTHANC_USER,
                                "EUTIRADS_DICOMWEB_PASSWORD": ORTHANC_PASSWORD})
    one = _studies(phantom_exams)[0]
    report = pull(orthanc.dicomweb, tmp_path / "one", key_path=tmp_path / "k", studies=[one],
                  session=session, workers=1)
    assert (report.studies, report.pulled) == (1, 1) and report.instances >= 1
    future = pull(orthanc.dicomweb, tmp_path / "none", key_path=tmp_path / "k",
                  since=__import__("datetime").date(2999, 1, 1), session=session)
    assert future.studies == 0


def test_a_study_failing_halfway_is_reported_in_one_line_and_retried_next_time(
        orthanc, phantom_exams, credentials, tmp_path, monkeypatch, caplog):
    from dicomweb_client.api import DICOMwebClient

    real = DICOMwebClient.retrieve_instance
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the network drops in the middle of the pull
            raise ConnectionError("connection reset")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DICOMwebClient, "retrieve_instance", flaky)
    out, key = tmp_path / "ds", tmp_path / "deid.key"
    report = pull(orthanc.dicomweb, out, key_path=key, workers=1)
    studies = len(_studies(phantom_exams))
    assert (report.failed, report.pulled) == (1, studies - 1)
    assert len(report.errors) == 1 and "\n" not in report.errors[0]
    assert "retrieval failed (ConnectionError)" in report.errors[0]
    assert_nothing_identifying(identifying_values(phantom_exams), report.errors[0], caplog.text)

    monkeypatch.setattr(DICOMwebClient, "retrieve_instance", real)
    again = pull(orthanc.dicomweb, out, key_path=key, workers=1)
    assert (again.failed, again.pulled, again.skipped) == (0, 1, studies - 1)
    direct = tmp_path / "direct"
    ingest([phantom_exams], direct, key_path=key, workers=1, progress=False)
    assert _identities(out) == _identities(direct)


def test_an_unreachable_pacs_and_wrong_credentials_are_one_line_errors(
        orthanc, tmp_path, capsys, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}/dicom-web"
    assert main(["ingest", "--dicomweb", closed, "--out", str(tmp_path / "a"),
                 "--key", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot search the PACS (ConnectionError)" in err

    monkeypatch.setenv("EUTIRADS_DICOMWEB_USER", ORTHANC_USER)
    monkeypatch.setenv("EUTIRADS_DICOMWEB_PASSWORD", "wrong")
    assert main(["ingest", "--dicomweb", orthanc.dicomweb, "--out", str(tmp_path / "b"),
                 "--key", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "access refused (HTTP 401" in err

    assert main(["ingest", "--dicomweb", "http://user:secret@127.0.0.1/x", "--out",
                 str(tmp_path / "c"), "--key", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert "not in the URL" in err and "secret" not in err
