"""`export_web`: a bundle -> a static site that classifies images in the browser.

The site is plain files (index.html, the page's JavaScript, onnxruntime-web's wasm build,
the bundle's model files and `site.json`) that any static web server can host; the image
never leaves the user's machine. Everything the page shows about the guideline comes from
`eutirads.categories` and everything about the model from the bundle, written into
`site.json` here, so Python stays the one source of both. The preprocessing rule travels
as the bundle's own `preprocess.json`, read by `webpage/pipeline.js`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import __version__
from ..categories import CATEGORIES, EU_TIRADS_LABELS, fna_advice
from ..errors import ModelError
from ..imageio import DEFAULT_MAX_PIXELS
from ..inference.bundle import (CARD_FILE, INPUT_NAME, MODEL_FILE, OUTPUT_NAMES,
                                PREPROCESS_FILE, read_head, read_metadata)
from ..inference.heatmap import COLOR_ANCHORS
from ..preprocess import PreprocessSpec

__all__ = ["SITE_FORMAT", "PAGE_BUNDLE_FORMATS", "export_web", "site_description",
           "category_texts", "STATIC_DIR"]

# What site.json's layout is; the page refuses a site.json of another format.
SITE_FORMAT = 1
# Bundle formats the page's JavaScript reads (app.js has the same list and says so when a
# site holds another one).
PAGE_BUNDLE_FORMATS = (1,)
STATIC_DIR = Path(__file__).with_name("webpage")
SITE_FILE = "site.json"
MODEL_DIR = "model"
HEAD_BIN = "cam_head.bin"


def category_texts() -> dict[str, Any]:
    """The guideline as the page shows it: per category its name, definition, features,
    malignancy risk and FNA advice (the size-free advice of `categories.fna_advice`)."""
    return {
        "labels": list(EU_TIRADS_LABELS),
        "categories": {
            cat.label: {"name": cat.name, "definition": cat.definition,
                        "features": cat.features, "risk": cat.risk_text,
                        "advice": fna_advice(cat.number)}
            for cat in CATEGORIES.values()
        },
    }


def _public_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows about the model: no training paths, nothing local."""
    keep = ("name", "version", "model_name", "created", "eutirads_version", "model_sha256",
            "class_names", "test_metrics")
    return {key: meta.get(key) for key in keep if key in meta}


def site_description(meta: Mapping[str, Any], spec: PreprocessSpec,
                     head_shape: tuple[int, int]) -> dict[str, Any]:
    """site.json: where the page finds each part and how to read it."""
    class_names = list(spec.class_names)
    return {
        "site_format": SITE_FORMAT,
        "bundle_format": meta.get("format_version"),
        "eutirads_version": __version__,
        "bundle": _public_metadata(meta),
        "classifier": {
            "model": f"{MODEL_DIR}/{MODEL_FILE}",
            "preprocess": f"{MODEL_DIR}/{PREPROCESS_FILE}",
            "input": INPUT_NAME,
            "outputs": list(OUTPUT_NAMES),
            # weight (K x C) then bias (K), float32 little-endian
            "head": {"file": f"{MODEL_DIR}/{HEAD_BIN}", "shape": list(head_shape)},
            "class_names": class_names,
            "tta": bool(meta.get("tta", False)),
            "scheme": "eu-tirads" if set(class_names) <= set(EU_TIRADS_LABELS) else "other",
        },
        # Filled by bundles that carry them (format 2): the page shows each part it finds.
        "localiser": None,
        "descriptors": None,
        "calibration": None,
        "abstain": None,
        "card": f"{MODEL_DIR}/{CARD_FILE}",
        "guideline": category_texts(),
        "heatmap_colors": COLOR_ANCHORS.astype(int).tolist(),
        "max_pixels": DEFAULT_MAX_PIXELS,
    }


def _write_head(bundle: Path, target: Path) -> tuple[int, int]:
    weight, bias = read_head(bundle)
    data = np.concatenate([weight.ravel(), bias.ravel()]).astype("<f4")
    target.write_bytes(data.tobytes())
    return int(weight.shape[0]), int(weight.shape[1])


def _check_target(out: Path) -> None:
    """A site folder may be replaced; any other non-empty folder is left alone."""
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_FILE).is_file():
        raise ModelError(f"{out}: folder is not empty and holds no earlier site "
                         f"({SITE_FILE}); choose an empty or new folder")


def export_web(bundle: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the static site for `bundle` into `out` and return `out`.

    Built in a temporary folder beside `out` and moved in at the end, so a failure never
    leaves a half site or spoils an earlier one. Works offline: onnxruntime-web is in the
    package data (scripts/vendor_web_runtime.py puts it there).
    """
    bundle, out = Path(bundle), Path(out)
    meta = read_metadata(bundle)  # refuses other bundle formats with a one-line reason
    if meta.get("format_version") not in PAGE_BUNDLE_FORMATS:
        raise ModelError(f"{bundle}: bundle format {meta.get('format_version')!r} has no web "
                         f"page yet (export-web reads {PAGE_BUNDLE_FORMATS})")
    spec = PreprocessSpec.load(bundle / PREPROCESS_FILE)
    if not spec.class_names:
        raise ModelError(f"{bundle}: preprocess.json names no classes")
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-web-", dir=out.parent))
    try:
        shutil.copytree(STATIC_DIR, work, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "VENDOR.json"))
        models = work / MODEL_DIR
        models.mkdir()
        for name in (MODEL_FILE, PREPROCESS_FILE, CARD_FILE):
            if (bundle / name).is_file():
                shutil.copy2(bundle / name, models / name)
        head_shape = _write_head(bundle, models / HEAD_BIN)
        if head_shape[0] != len(spec.class_names):
            raise ModelError(f"{bundle}: {len(spec.class_names)} classes but a head for "
                             f"{head_shape[0]}")
        site = site_description(meta, spec, head_shape)
        (work / SITE_FILE).write_text(json.dumps(site, indent=1) + "\n", encoding="utf-8")
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
