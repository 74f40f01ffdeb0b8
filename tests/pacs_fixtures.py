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
