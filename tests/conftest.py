"""Shared fixtures. Tests that need the DDTI-dev images skip, naming the reason, when the
folder is absent; nothing from it is ever copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DDTI = REPO.parent / "shared" / "datasets" / "ddti-dev"

# Phantom exams and a real Orthanc for the DICOM network tests (listen, DICOMweb, SR/SEG).
pytest_plugins = ["tests.pacs_fixtures"]


@pytest.fixture(scope="session")
def ddti_dir() -> Path:
    path = Path(os.environ.get("EUTIRADS_DDTI_DIR", DEFAULT_DDTI))
    if not (path / "xml").is_dir() or not (path / "raw_jpg").is_dir():
        pytest.skip(f"DDTI-dev images not found at {path} (set EUTIRADS_DDTI_DIR)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's EUTIRADS_HOME out of the user's real data folder."""
    monkeypatch.setenv("EUTIRADS_HOME", str(tmp_path_factory.mktemp("home")))
