"""`eutirads listen`: exams sent over DICOM (dcmtk's storescu, pynetdicom) land de-identified
in a dataset through the ordinary ingest; the spool is owner-only and emptied; bad objects
are quarantined, unknown AE titles refused, SIGTERM loses nothing, a crash is recovered."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from eutirads.dicom import ingest
from eutirads.pacs.listener import Listener, ListenOptions, parse_allow
from tests.pacs_fixtures import (assert_nothing_identifying, exam_files, free_port,
                                 identifying_values)

pytestmark = pytest.mark.slow

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _dcmtk(name: str) -> str:
    """dcmtk's tool, not pynetdicom's same-named console script that may shadow it."""
    for candidate in (f"/usr/bin/{name}", shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return candidate
    pytest.skip(f"dcmtk's {name} not installed (Debian package dcmtk)")


def _rows(dataset: Path) -> list[dict[str, str]]:
    with open(dataset / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _identities(rows) -> set[tuple[str, ...]]:
    return {(r["patient_id"], r["study_id"], r["series_id"], r["frame"]) for r in rows}


def _spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*") if p.is_file()]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("eutirads listen did not open its port")


def test_exams_sent_with_storescu_land_de_identified_and_sigterm_loses_nothing(
        phantom_exams, tmp_path):
    storescu, echoscu = _dcmtk("storescu"), _dcmtk("echoscu")
    out, key, spool, port = tmp_path / "ds", tmp_path / "deid.key", tmp_path / "spool", free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eutirads", "listen", "--out", str(out), "--key", str(key),
         "--host", "127.0.0.1", "--port", str(port), "--spool", str(spool),
         "--allow", "STORESCU@127.0.0.1,ECHOSCU@localhost"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port, proc)
        # -xr: propose RLE Lossless besides the uncompressed syntaxes (some exams are RLE).
        sent = subprocess.run([storescu, "-aet", "STORESCU", "-aec", "EUTIRADS", "-xr", "+sd",
                               "+r", "+sp", "*.dcm", "127.0.0.1", str(port), str(phantom_exams)],
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr[-2000:]
        echo = subprocess.run([echoscu, "-aet", "ECHOSCU", "-aec", "EUTIRADS", "127.0.0.1",
                               str(port)], capture_output=True, text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr
        refused = subprocess.run([echoscu, "-aet", "INTRUDER", "-aec", "EUTIRADS", "127.0.0.1",
                                  str(port)], capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700
        # Stop at once: whatever is still spooled must be ingested before the exit.
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "6 objects received, 1 refused" in stdout

    # The same exams ingested from disk with the same key give the same rows.
    direct = tmp_path / "direct"
    ingest([phantom_exams], direct, key_path=key, workers=1, progress=False)
    received = _rows(out)
    assert _identities(received) == _identities(_rows(direct))
    assert len(received) > 6 and all(r["source"] == "dicom" for r in received)  # cine frames too
    assert not _spool_files(spool)  # every identified copy deleted once journaled
    names = "\n".join(str(p.relative_to(out)) for p in out.rglob("*"))
    assert_nothing_identifying(identifying_values(phantom_exams), stdout, stderr, names,
                               (out / "manifest.csv").read_text())


def _dataset(path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    return ds


def _single_frame_exams(root: Path) -> list[Path]:
    return [p for p in exam_files(root)
            if int(pydicom.dcmread(p, stop_before_pixels=True).get("NumberOfFrames", 1)) == 1]


def test_a_bad_object_is_quarantined_a_secondary_capture_ingested_and_strangers_refused(
        phantom_exams, tmp_path):
    from pynetdicom import AE

    first, second = _single_frame_exams(phantom_exams)[:2]
    capture = _dataset(first)
    capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    capture.SOPInstanceUID = capture.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    broken = _dataset(second)
    broken.PixelData = broken.PixelData[:len(broken.PixelData) // 2]  # header says more

    out, spool = tmp_path / "ds", tmp_path / "spool"
    listener = Listener(ListenOptions(
        out=out, key_path=tmp_path / "deid.key", host="127.0.0.1", port=0, spool=spool,
        allow=parse_allow(["SCANNER@127.0.0.1", "FARAWAY@192.0.2.7"]), batch_seconds=0.2))
    port = listener.start()
    try:
        def associate(title: str):
            ae = AE(ae_title=title)
            for sop in (SECONDARY_CAPTURE, "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.1.1"):
                ae.add_requested_context(sop, ExplicitVRLittleEndian)
            return ae.associate("127.0.0.1", port, ae_title="EUTIRADS")

        assoc = associate("SCANNER")
        assert assoc.is_established
        statuses = [assoc.send_c_store(ds).Status for ds in (broken, capture)]
        assoc.release()
        assert statuses == [0, 0]  # both safely spooled; ingest judges them afterwards

        stranger = associate("INTRUDER")
        assert stranger.is_rejected
        elsewhere = associate("FARAWAY")  # a known title, but not from this address
        assert elsewhere.is_established
        assert elsewhere.send_c_store(capture).Status == 0x0124
        elsewhere.release()
    finally:
        listener.stop()
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["source"] == "dicom"
    with open(out / "quarantine.csv", newline="") as handle:
        quarantined = list(csv.DictReader(handle))
    assert [q["reason_code"] for q in quarantined] == ["bad-header"]
    assert listener.received == 2 and listener.refused == 2
    assert not _spool_files(spool)


def test_what_a_crash_left_in_the_spool_is_ingested_on_the_next_start(phantom_exams, tmp_path):
    out, key, spool = tmp_path / "ds", tmp_path / "deid.key", tmp_path / "spool"
    files = exam_files(phantom_exams)[:3]
    # The crash came after the first object was journaled but before its copy was deleted.
    ingest([files[0]], out, key_path=key, workers=1, progress=False)
    for folder, source in (("work", files[0]), ("work", files[1]), ("ready", files[2])):
        (spool / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, spool / folder / f"{folder}-{source.stem[-1]}.dcm")
    (spool / "incoming").mkdir()
    (spool / "incoming" / "partial.dcm").write_bytes(files[1].read_bytes()[:1000])

    listener = Listener(ListenOptions(out=out, key_path=key, host="127.0.0.1", port=0,
                                      spool=spool, batch_seconds=0.2))
    listener.start()
    listener.stop()
    direct = tmp_path / "direct"
    ingest(files, direct, key_path=key, workers=1, progress=False)
    assert _identities(_rows(out)) == _identities(_rows(direct))
    assert not _spool_files(spool)
    assert stat.S_IMODE((spool / "work").stat().st_mode) == 0o700


def test_dicom_over_tls_is_accepted_and_plain_dicom_is_not(tmp_path):
    import ssl

    from pynetdicom import AE

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=localhost", "-days", "1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    listener = Listener(ListenOptions(out=tmp_path / "ds", key_path=tmp_path / "deid.key",
                                      host="127.0.0.1", port=0, spool=tmp_path / "spool",
                                      tls_cert=cert, tls_key=key))
    port = listener.start()
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.acse_timeout = ae.network_timeout = 5
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        secure = ae.associate("127.0.0.1", port, ae_title="EUTIRADS",
                              tls_args=(client, "localhost"))
        assert secure.is_established and secure.send_c_echo().Status == 0
        secure.release()
        plain = ae.associate("127.0.0.1", port, ae_title="EUTIRADS")
        assert not plain.is_established
    finally:
        listener.stop()
