"""Fixtures shared by the DICOM network tests (listen, DICOMweb, SR/SEG): phantom exams and
free loopback ports. Import the fixtures into a test module to use them."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def phantom_exams(tmp_path_factory) -> Path:
    """Six phantom exams (seed 1): single-frame and cine, explicit little endian and RLE,
    each with an invented identity listed in phantom_identities.json."""
    from eutirads.phantom.dicom import generate_dicom

    root = tmp_path_factory.mktemp("exams") / "pd"
    generate_dicom(root, n=6, seed=1, width=320, height=200, progress=False, workers=1)
    return root


def exam_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


def identifying_values(root: Path) -> set[str]:
    """Every invented identifying value of the phantom exams (names, ids, UIDs, dates...)."""
    values: set[str] = set()

    def walk(item) -> None:
        if isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, (list, tuple, set)):
            for value in item:
                walk(value)
        elif isinstance(item, str) and len(item) >= 6:
            values.add(item)

    walk(json.loads((root / "phantom_identities.json").read_text(encoding="utf-8"))["patients"])
    return values


def assert_nothing_identifying(values: set[str], *texts: str) -> None:
    for text in texts:
        for value in values:
            assert value not in text, "an identifying value reached the output"


def needs_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package; scripts/test.sh installs it)")
    return path


ORTHANC_USER, ORTHANC_PASSWORD = "eutirads", "test-only-password"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class OrthancServer:
    """A running Orthanc: `dicomweb` is its DICOMweb root, `rest` its REST API."""

    def __init__(self, port: int):
        self.rest = f"http://127.0.0.1:{port}"
        self.dicomweb = f"{self.rest}/dicom-web"
        self.auth = (ORTHANC_USER, ORTHANC_PASSWORD)

    def upload(self, files) -> None:
        import requests

        for path in files:
            response = requests.post(f"{self.rest}/instances", data=Path(path).read_bytes(),
                                     auth=self.auth, timeout=30)
            response.raise_for_status()

    def get(self, path: str):
        import requests

        response = requests.get(f"{self.rest}{path}", auth=self.auth, timeout=30)
        response.raise_for_status()
        return response


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, phantom_exams):
    """Debian's Orthanc with its DICOMweb plugin, on a free loopback port, with a storage of
    its own, loaded with the phantom exams; stopped at the end of the session."""
    import subprocess
    import time

    import requests

    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists()
                                         else None)
    if binary is None:
        pytest.skip("Orthanc not installed (Debian package orthanc)")
    if not DICOMWEB_PLUGIN.is_file():
        pytest.skip("Orthanc's DICOMweb plugin not installed (Debian package orthanc-dicomweb)")
    root = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = {
        "Name": "eutirads-test", "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"), "HttpPort": port,
        "DicomServerEnabled": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {ORTHANC_USER: ORTHANC_PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)], "StableAge": 1, "HttpThreadsCount": 8,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
    }
    (root / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    with open(root / "orthanc.log", "wb") as log:
        proc = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=log,
                                cwd=root)
    server = OrthancServer(port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (root / "orthanc.log").read_text(errors="replace")[-2000:]
            try:
                if requests.get(f"{server.rest}/system", auth=server.auth, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Orthanc did not start"
            time.sleep(0.3)
        server.upload(exam_files(phantom_exams))
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
