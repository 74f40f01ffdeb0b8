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
from ..categories import CATEGORIES, EU_TIRADS_LABELS, fna_advice, rule_table
from ..errors import ModelError
from ..imageio import DEFAULT_MAX_PIXELS
from ..inference.abstention import (COLOUR_SPREAD, COLOURED_FRACTION, WHITE_FRACTION,
                                    AbstainRule)
from ..inference.bundle import (CARD_FILE, CLASSIFIER, INPUT_NAME, LOCALISER, LOCALISER_OUTPUTS,
                                MEASURED, MEASURED_INPUTS, METADATA_FILE, OUTLINE, OUTLINE_INPUTS,
                                OUTPUT_NAMES, component_file, read_head,
                                read_metadata)
from ..inference.descriptors import CATEGORY_SOURCES, rule_applies
from ..inference.heatmap import COLOR_ANCHORS
from ..inference.localiser import NO_NODULE
from ..preprocess import PreprocessSpec

__all__ = ["SITE_FORMAT", "PAGE_BUNDLE_FORMATS", "export_web", "site_description",
           "category_texts", "STATIC_DIR"]

# What site.json's layout is; the page refuses a site.json of another format.
SITE_FORMAT = 1
# Bundle formats the page's JavaScript reads (app.js has the same list and says so when a
# site holds another one).
PAGE_BUNDLE_FORMATS = (1, 2)
STATIC_DIR = Path(__file__).with_name("webpage")
SITE_FILE = "site.json"
MODEL_DIR = "model"
HEAD_BIN = "cam_head.bin"
OOD_BIN = "ood_reference.f16"
SERVICE_WORKER = "isolate.js"  # written only with service_worker=True


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


def _classifier_site(bundle: Path, settings: Mapping[str, Any], spec: PreprocessSpec,
                     head_shape: tuple[int, int], models: Path,
                     measured: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The page's description of the classifier: its files, outputs, descriptor heads and
    the numbers its abstention needs (as `Predictor` reads them from bundle.json). With a
    `measured` component (its bundle.json entry) the rule and the category source are
    `Predictor`'s with it: the measured descriptors count, and its category_source wins."""
    class_names = list(spec.class_names)
    descriptors = {name: {"output": head["output"], "values": list(head["values"])}
                   for name, head in (settings.get("descriptors") or {}).items()}
    rule = AbstainRule.from_settings(settings)
    source = str(settings.get("category_source", "head"))
    names = list(descriptors) + list((measured or {}).get("descriptors") or {})
    applies = rule_applies(class_names, names)
    if source not in CATEGORY_SOURCES or (source != "head" and not applies):
        source = "head"
    chosen = (measured or {}).get("category_source")
    if measured is not None and chosen in CATEGORY_SOURCES and applies:
        source = str(chosen)
    return {
        "model": f"{MODEL_DIR}/{settings['model']}",
        "preprocess": f"{MODEL_DIR}/{settings['preprocess']}",
        "input": INPUT_NAME,
        "outputs": list(OUTPUT_NAMES) + [head["output"] for head in descriptors.values()],
        # weight (K x C) then bias (K), float32 little-endian
        "head": {"file": f"{MODEL_DIR}/{HEAD_BIN}", "shape": list(head_shape)},
        "class_names": class_names,
        "tta": bool(settings.get("tta", False)),
        "scheme": "eu-tirads" if set(class_names) <= set(EU_TIRADS_LABELS) else "other",
        "descriptors": descriptors,
        "rule_applies": applies,
        "category_source": source,
        "temperature": rule.temperature,
        "low_confidence": rule.low_confidence,
        "ood": _ood_site(bundle, settings, rule, models),
    }


def _ood_site(bundle: Path, settings: Mapping[str, Any], rule: AbstainRule,
              models: Path) -> dict[str, Any] | None:
    """The out-of-distribution reference (pooled training features) as raw float16."""
    name = (settings.get("ood") or {}).get("reference")
    if not name or rule.ood_threshold is None:
        return None
    try:
        reference = np.asarray(np.load(bundle / _plain_name(bundle, name), allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{bundle / name}: not readable ({type(exc).__name__})") from None
    if reference.ndim != 2:
        raise ModelError(f"{bundle / name}: expected N x C features, got {reference.shape}")
    (models / OOD_BIN).write_bytes(reference.astype("<f2").tobytes())
    return {"reference": f"{MODEL_DIR}/{OOD_BIN}", "shape": list(reference.shape),
            "k": rule.ood_k, "threshold": float(rule.ood_threshold)}


def _localiser_site(settings: Mapping[str, Any]) -> dict[str, Any]:
    try:
        threshold = float(settings.get("threshold", 0.5))
        min_region_px = int(settings.get("min_region_px", 0))
        min_score = float(settings.get("min_score", 0.0))
    except (TypeError, ValueError):
        raise ModelError("the localiser's threshold/min_region_px/min_score are not "
                         "numbers") from None
    return {
        "model": f"{MODEL_DIR}/{settings['model']}",
        "preprocess": f"{MODEL_DIR}/{settings['preprocess']}",
        "input": INPUT_NAME,
        "outputs": list(LOCALISER_OUTPUTS),
        "threshold": threshold,
        "min_region_px": min_region_px,
        "min_score": min_score,
        "no_nodule_reason": NO_NODULE,
    }


def _measured_site(bundle: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The measured descriptors (inference.measured.Measured): the graph, its grid and each
    descriptor's output and values; the page builds the inputs as `measure_inputs` does."""
    try:
        grid = [int(settings["grid"][0]), int(settings["grid"][1])]
    except (KeyError, TypeError, ValueError, IndexError):
        raise ModelError(f"{bundle}: the measured component names no grid [H, W]") from None
    descriptors = {name: {"output": head["output"], "values": list(head["values"])}
                   for name, head in (settings.get("descriptors") or {}).items()}
    return {"model": f"{MODEL_DIR}/{settings['model']}", "grid": grid,
            "inputs": list(MEASURED_INPUTS), "descriptors": descriptors}


def _outline_site(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The outline's category (inference.outline.Outline): the graph, its classes, its
    temperature and low-confidence threshold, and whether it is the default; the page
    builds the inputs as `outline_inputs` does, from the localiser's input and map."""
    return {"model": f"{MODEL_DIR}/{settings['model']}", "inputs": list(OUTLINE_INPUTS),
            "class_names": [str(c) for c in settings.get("class_names") or []],
            "temperature": float(settings.get("temperature", 1.0)),
            "low_confidence": float(settings.get("low_confidence", 0.0)),
            "default": bool(settings.get("default", False))}


def _other_site(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A component the page has no steps for yet: its files, so the page loads it like the
    others (a session, and its preprocessing when it has one) for code that uses it."""
    return {
        "model": f"{MODEL_DIR}/{settings['model']}",
        "preprocess": f"{MODEL_DIR}/{settings['preprocess']}" if settings.get("preprocess") else None,
        "input": INPUT_NAME,
    }


def site_description(meta: Mapping[str, Any], parts: Mapping[str, dict[str, Any] | None], *,
                     card: bool = True, service_worker: bool = False) -> dict[str, Any]:
    """site.json: where the page finds each part and how to read it. `parts` holds the
    page's description of each component present ("classifier", "localiser", "measured",
    "outline"); `card`
    whether the bundle has a model card; `service_worker` whether the page installs
    `isolate.js` to get threads on a host that sends no isolation headers."""
    classifier = meta["components"].get(CLASSIFIER) or {}
    public = {**_public_metadata(classifier), **_public_metadata(meta)}
    return {
        "site_format": SITE_FORMAT,
        "bundle_format": meta.get("format_version"),
        "eutirads_version": __version__,
        "bundle": public,
        "classifier": parts.get(CLASSIFIER),
        "localiser": parts.get(LOCALISER),
        "measured": parts.get(MEASURED),
        "outline": parts.get(OUTLINE),
        # every other component, by name, loaded by the page generically
        "components": {name: part for name, part in parts.items()
                       if name not in (CLASSIFIER, LOCALISER, MEASURED, OUTLINE)},
        # inference.abstention's not-ultrasound check, which every prediction runs
        "not_ultrasound": {"coloured_fraction": COLOURED_FRACTION, "colour_spread": COLOUR_SPREAD,
                           "white_fraction": WHITE_FRACTION},
        "card": f"{MODEL_DIR}/{CARD_FILE}" if card else None,
        "guideline": category_texts(),
        "rule": rule_table(),
        "heatmap_colors": COLOR_ANCHORS.astype(int).tolist(),
        "max_pixels": DEFAULT_MAX_PIXELS,
        "service_worker": service_worker,
    }


def _write_head(bundle: Path, file_name: str, target: Path) -> tuple[int, int]:
    weight, bias = read_head(bundle, file_name)
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


def _plain_name(bundle: Path, value: Any) -> str:
    if not isinstance(value, str) or not value or Path(value).name != value or value in (".", ".."):
        raise ModelError(f"{bundle / METADATA_FILE}: file name {value!r} is not a plain file name")
    if not (bundle / value).is_file():
        raise ModelError(f"{bundle}: incomplete bundle ({value} missing)")
    return value


def _copy_parts(bundle: Path, meta: Mapping[str, Any], models: Path) -> dict[str, Any]:
    """Copy each component's files into `models` and describe them for the page."""
    parts: dict[str, Any] = {}
    # As Predictor: the measured descriptors run only beside a localiser (read_metadata
    # refuses a bundle with one and not the other).
    measured = meta["components"].get(MEASURED) if LOCALISER in meta["components"] else None
    for name, settings in meta["components"].items():
        files = {CLASSIFIER: ("model", "preprocess", "cam_head"), LOCALISER: ("model", "preprocess")}
        # another component: its model, and its preprocessing when it names one
        keys = files.get(name, ("model", "preprocess") if settings.get("preprocess") else ("model",))
        for key in keys:
            component_file(bundle, meta, name, key)  # a plain name inside the bundle, present
        for key in keys:
            if key != "cam_head":
                shutil.copy2(bundle / settings[key], models / settings[key])
        if name == LOCALISER:
            parts[name] = _localiser_site(settings)
            continue
        if name == MEASURED:
            if measured is not None:
                parts[name] = _measured_site(bundle, settings)
            continue
        if name == OUTLINE:
            parts[name] = _outline_site(settings)
            continue
        if name != CLASSIFIER:
            parts[name] = _other_site(name, settings)
            continue
        spec = PreprocessSpec.load(bundle / settings["preprocess"])
        if not spec.class_names:
            raise ModelError(f"{bundle}: {settings['preprocess']} names no classes")
        head_shape = _write_head(bundle, settings["cam_head"], models / HEAD_BIN)
        if head_shape[0] != len(spec.class_names):
            raise ModelError(f"{bundle}: {len(spec.class_names)} classes but a head for "
                             f"{head_shape[0]}")
        parts[name] = _classifier_site(bundle, settings, spec, head_shape, models, measured)
    return parts


def export_web(bundle: str | os.PathLike[str], out: str | os.PathLike[str], *,
               service_worker: bool = False) -> Path:
    """Write the static site for `bundle` into `out` and return `out`.

    `service_worker`: also write `isolate.js`, a service worker that adds the COOP/COEP
    headers a host like GitHub Pages cannot send, so the page runs the model on several
    threads there too (it reloads once on a first visit). Without it the page uses threads
    only where the server sends those headers itself.

    Built in a temporary folder beside `out` and moved in at the end, so a failure never
    leaves a half site or spoils an earlier one. Works offline: onnxruntime-web is in the
    package data (scripts/vendor_web_runtime.py puts it there).
    """
    bundle, out = Path(bundle), Path(out)
    meta = read_metadata(bundle)  # refuses other bundle formats with a one-line reason
    if meta.get("format_version") not in PAGE_BUNDLE_FORMATS:
        raise ModelError(f"{bundle}: bundle format {meta.get('format_version')!r} has no web "
                         f"page yet (export-web reads {PAGE_BUNDLE_FORMATS})")
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-web-", dir=out.parent))
    try:
        skip = ("__pycache__", "VENDOR.json") + (() if service_worker else (SERVICE_WORKER,))
        shutil.copytree(STATIC_DIR, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*skip))
        models = work / MODEL_DIR
        models.mkdir()
        parts = _copy_parts(bundle, meta, models)
        card = (bundle / CARD_FILE).is_file()
        if card:
            shutil.copy2(bundle / CARD_FILE, models / CARD_FILE)
        site = site_description(meta, parts, card=card, service_worker=service_worker)
        (work / SITE_FILE).write_text(json.dumps(site, indent=1) + "\n", encoding="utf-8")
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
