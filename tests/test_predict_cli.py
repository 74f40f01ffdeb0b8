"""`eutirads predict`: per-image results, heatmap files with our own names, and a bad file
that fails alone."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from eutirads.cli import main

from model_helpers import tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("cli") / "bundle")


def _eutirads(capsys, *args: str) -> SimpleNamespace:
    """Run the CLI in this process (same code path as the console script, without paying
    for a fresh interpreter and torch import per call)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def _images(folder):
    rng = np.random.default_rng(0)
    good1, good2 = folder / "Doe^Jane 1999.png", folder / "b.jpg"
    Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(good1)
    Image.fromarray(rng.integers(0, 255, (60, 70), dtype=np.uint8)).save(good2)
    bad = folder / "bad.png"
    bad.write_bytes(b"not an image at all")
    return good1, bad, good2


def test_predict_prints_json_and_goes_on_past_a_bad_file(bundle, tmp_path, capsys):
    good1, bad, good2 = _images(tmp_path)
    heat_dir = tmp_path / "heat"
    proc = _eutirads(capsys, "predict", str(bundle), str(good1), str(bad), str(good2), "--json",
                     "--heatmap", str(heat_dir))
    assert proc.returncode == 1
    lines = [line.strip() for line in re.split(r"[\r\n]", proc.stderr)]
    errors = [line for line in lines if line.startswith("eutirads: error:")]
    assert len(errors) == 1 and "bad.png" in errors[0]
    assert "predicted 2 of 3 image(s); 1 failed" in proc.stderr
    out = json.loads(proc.stdout)
    assert out["bundle"]["class_names"] == ["3", "4", "5"]
    first, failed, last = out["predictions"]
    assert "error" in failed and "label" not in failed
    for entry, size in ((first, (100, 80)), (last, (70, 60))):
        assert set(entry["probabilities"]) == {"3", "4", "5"}
        assert sum(entry["probabilities"].values()) == pytest.approx(1.0)
        assert entry["name"].startswith("EU-TIRADS ")
        with Image.open(entry["heatmap"]) as overlay:
            assert overlay.size == size and overlay.mode == "RGB"
    # Heatmaps carry our own names, never the input's (which may identify a patient).
    assert sorted(p.name for p in heat_dir.iterdir()) == ["heatmap_0001.png", "heatmap_0003.png"]


def test_predict_prints_one_line_per_image_in_text_mode(bundle, tmp_path, capsys):
    good1, _, good2 = _images(tmp_path)
    proc = _eutirads(capsys, "predict", str(bundle), str(good1), str(good2), "--box", "10,10,50,40")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(" p=" in line and "[3:" in line for line in lines)


def test_predict_with_a_missing_bundle_is_a_one_line_error(tmp_path, capsys):
    proc = _eutirads(capsys, "predict", str(tmp_path / "nope"), str(tmp_path / "x.png"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"eutirads: error: {tmp_path / 'nope'}: bundle folder not found"


def test_predict_reads_an_ultrasound_dicom_without_its_burned_in_text(bundle, tmp_path, capsys):
    from eutirads.phantom import generate_dicom

    generate_dicom(tmp_path / "dcm", n=1, seed=3, progress=False, workers=1)
    dicom = next((tmp_path / "dcm").rglob("*.dcm"))
    identity = json.loads((tmp_path / "dcm" / "phantom_identities.json").read_text())
    patient = identity["patients"][0]
    heat_dir = tmp_path / "heat"
    proc = _eutirads(capsys, "predict", str(bundle), str(dicom), "--json", "--heatmap", str(heat_dir),
                     "--opacity", "1")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["predictions"][0]
    assert set(entry["probabilities"]) == {"3", "4", "5"}
    for value in (patient["patient_name"], patient["patient_id"], patient["banner_name"]):
        assert value not in proc.stdout + proc.stderr
    import pydicom

    ds = pydicom.dcmread(dicom)
    overlay = np.asarray(Image.open(heat_dir / "heatmap_0001.png"))
    assert overlay.shape[:2] == (ds.Rows, ds.Columns)
    region = ds.SequenceOfUltrasoundRegions[0]
    # Outside the ultrasound region (where the scanner writes the patient's name) all is black.
    assert not overlay[:int(region.RegionLocationMinY0)].any()
