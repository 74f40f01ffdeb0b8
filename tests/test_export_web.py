"""`eutirads export-web` writes a self-contained site from a bundle, offline; refuses what
it cannot serve with one line; the vendored runtime matches its pinned checksums; the
guideline texts come from `eutirads.categories` and every one has a Spanish translation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eutirads.categories import CATEGORIES, rule_table
from eutirads.cli import main
from eutirads.export.web import STATIC_DIR, category_texts, export_web

from model_helpers import tiny_bundle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("web") / "bundle",
                       data_summary={"dataset": "/somewhere/private/ds"})


def test_export_web_writes_a_site_with_everything_the_page_needs(bundle, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["export-web", str(bundle), "--out", str(site)]) == 0
    assert "wrote a static site to" in capsys.readouterr().out
    for name in ("index.html", "app.js", "pipeline.js", "style.css", "i18n.json", "site.json",
                 "model/model.onnx", "model/preprocess.json", "model/cam_head.bin",
                 "model/model_card.md", "vendor/onnxruntime-web/ort.wasm.bundle.min.mjs",
                 "vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm",
                 "vendor/onnxruntime-web/LICENSE.txt"):
        assert (site / name).is_file(), name
    assert (site / "model/model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
    description = json.loads((site / "site.json").read_text())
    assert description["bundle_format"] == 2 and description["site_format"] == 1
    assert description["classifier"]["class_names"] == ["3", "4", "5"]
    # the head, as float32 little-endian weight then bias
    with np.load(bundle / "cam_head.npz") as head:
        k, c = head["weight"].shape
        raw = np.fromfile(site / "model/cam_head.bin", "<f4")
        assert description["classifier"]["head"]["shape"] == [k, c]
        assert np.array_equal(raw[:k * c].reshape(k, c), head["weight"])
        assert np.array_equal(raw[k * c:], head["bias"])
    # nothing local reaches the published site
    assert "/somewhere/private" not in (site / "site.json").read_text()


def test_the_service_worker_is_written_only_when_asked(bundle, tmp_path, capsys):
    plain, isolated = tmp_path / "plain", tmp_path / "isolated"
    assert main(["export-web", str(bundle), "--out", str(plain)]) == 0
    assert main(["export-web", str(bundle), "--out", str(isolated), "--service-worker"]) == 0
    assert not (plain / "isolate.js").exists()
    assert json.loads((plain / "site.json").read_text())["service_worker"] is False
    worker = (isolated / "isolate.js").read_text()
    assert json.loads((isolated / "site.json").read_text())["service_worker"] is True
    # it only adds the isolation headers to the page's own requests, and stores nothing
    assert "Cross-Origin-Embedder-Policy" in worker and "self.location.origin" in worker
    assert "caches" not in worker and not re.search(r"https?://\w", worker)


def test_another_component_is_copied_and_listed_for_the_page(bundle, tmp_path):
    from eutirads.export.web import _copy_parts, site_description
    from eutirads.inference.bundle import read_metadata

    meta = read_metadata(bundle)
    (tmp_path / "b").mkdir()
    for f in bundle.iterdir():
        (tmp_path / "b" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "b" / "extra.onnx").write_bytes((bundle / "model.onnx").read_bytes())
    meta["components"]["extra"] = {"model": "extra.onnx"}
    models = tmp_path / "models"
    models.mkdir()
    parts = _copy_parts(tmp_path / "b", meta, models)
    site = site_description(meta, parts)
    assert site["components"] == {"extra": {"model": "model/extra.onnx", "preprocess": None,
                                            "input": "input"}}
    assert (models / "extra.onnx").is_file() and site["classifier"]["model"] == "model/model.onnx"


def test_the_site_names_no_other_host_and_no_cdn(bundle, tmp_path):
    site = export_web(bundle, tmp_path / "site")
    html = (site / "index.html").read_text()
    assert re.search(r"default-src 'none'", html) and "connect-src 'self'" in html
    for name in ("index.html", "app.js", "pipeline.js", "style.css"):
        text = (site / name).read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert not re.search(r"https?://\w", text), name  # no address of any host


def test_guideline_texts_come_from_categories_and_are_all_translated(bundle, tmp_path):
    site = export_web(bundle, tmp_path / "site")
    description = json.loads((site / "site.json").read_text())
    guideline = description["guideline"]
    assert guideline == category_texts()
    assert description["rule"] == rule_table()
    for number, cat in CATEGORIES.items():
        entry = guideline["categories"][str(number)]
        assert entry["name"] == cat.name and entry["definition"] == cat.definition
    spanish = json.loads((STATIC_DIR / "i18n.json").read_text())["guideline"]["es"]
    texts = {v for entry in guideline["categories"].values() for v in entry.values()}
    rule = description["rule"]
    texts |= {w for words in rule["words"].values() for w in words.values()}
    texts |= {w for said in rule["high_risk"].values() for w in said.values()}
    texts |= set(rule["descriptors"]) | {v for vs in rule["descriptors"].values() for v in vs}
    texts.add(rule["path"]["no_nodule"])
    missing = sorted(t for t in texts if re.search("[A-Za-z]", t) and t not in spanish)
    assert missing == []


def test_every_page_string_exists_in_every_language():
    i18n = json.loads((STATIC_DIR / "i18n.json").read_text())
    keys = {lang: set(table) for lang, table in i18n["ui"].items()}
    assert set(keys) == set(i18n["languages"]) == {"en", "es"}
    assert keys["es"] == keys["en"]
    used = set(re.findall(r'data-i18n="([\w-]+)"', (STATIC_DIR / "index.html").read_text()))
    used |= set(re.findall(r'\b(?:t|PageError)\("([\w-]+)"', (STATIC_DIR / "app.js").read_text()))
    assert used and used <= keys["en"]


def test_a_format_1_bundle_gets_a_site_too(bundle, tmp_path):
    """Bundles exported before format 2 (a classifier's settings at the top level)."""
    old = tmp_path / "v1"
    old.mkdir()
    for file in bundle.iterdir():
        (old / file.name).write_bytes(file.read_bytes())
    meta = json.loads((old / "bundle.json").read_text())
    classifier = meta.pop("components")["classifier"]
    for key in ("model", "preprocess", "cam_head"):
        classifier.pop(key)
    (old / "bundle.json").write_text(json.dumps({**meta, **classifier, "format_version": 1}))
    (old / "model_card.md").unlink()  # a card is for people; a bundle works without one
    description = json.loads((export_web(old, tmp_path / "site") / "site.json").read_text())
    assert description["bundle_format"] == 1 and description["card"] is None
    assert description["classifier"]["model"] == "model/model.onnx"
    assert description["localiser"] is None


def test_another_bundle_format_is_refused_in_one_line(bundle, tmp_path, capsys):
    other = tmp_path / "bundle"
    other.mkdir()
    for file in bundle.iterdir():
        (other / file.name).write_bytes(file.read_bytes())
    meta = json.loads((other / "bundle.json").read_text())
    meta["format_version"] = 99
    (other / "bundle.json").write_text(json.dumps(meta))
    assert main(["export-web", str(other), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eutirads: error:") and "bundle format 99" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "site").exists()


def test_a_non_empty_folder_is_kept_and_an_earlier_site_replaced(bundle, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("keep me")
    assert main(["export-web", str(bundle), "--out", str(mine)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (mine / "thesis.docx").read_text() == "keep me"
    site = export_web(bundle, tmp_path / "site")
    (site / "stale.txt").write_text("old")
    export_web(bundle, site)
    assert not (site / "stale.txt").exists() and (site / "site.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-web")] == []


def test_the_vendored_runtime_matches_its_pinned_checksums():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "vendor_web_runtime.py"),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((STATIC_DIR / "vendor/onnxruntime-web/VENDOR.json").read_text())
    assert record["license"] == "MIT" and record["integrity"].startswith("sha512-")
    assert "MIT License" in (STATIC_DIR / "vendor/onnxruntime-web/LICENSE.txt").read_text()
