"""The bundle's model card (Markdown): what the model is, what it was trained and tested
on, what it is for and where it stops."""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..preprocess import PreprocessSpec

__all__ = ["model_card"]

_METRIC_NAMES = {
    "accuracy": "Accuracy", "macro_f1": "Macro-F1", "weighted_f1": "Weighted F1",
    "kappa": "Quadratic-weighted kappa", "macro_auc": "Macro one-vs-rest AUC",
    "high_risk_sensitivity": "High-risk sensitivity",
    "high_risk_specificity": "High-risk specificity", "high_risk_auc": "High-risk AUC",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _lines(values: Mapping[str, Any], indent: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.append(f"{indent}- {key}:")
            out.extend(_lines(value, indent + "  "))
        elif isinstance(value, (list, tuple)):
            out.append(f"{indent}- {key}: {', '.join(map(_fmt, value))}")
        else:
            out.append(f"{indent}- {key}: {_fmt(value)}")
    return out


def _test_section(test: Mapping[str, Any] | None) -> list[str]:
    if not test:
        return ["Not evaluated on a test split before export (run `eutirads evaluate RUN` "
                "first, then export again, to record test metrics here)."]
    summary = test.get("summary") or {}
    ci = test.get("ci") or {}
    out = [f"Split `{test.get('split', 'test')}`: {test.get('n', '?')} images of "
           f"{test.get('n_patients', '?')} patients. 95% intervals: bootstrap over patients.", "",
           "| Metric | Value | 95% CI |", "|---|---|---|"]
    for key, value in summary.items():
        interval = ci.get(key) or {}
        low, high = interval.get("low"), interval.get("high")
        ci_text = f"{_fmt(low)}-{_fmt(high)}" if low is not None else ""
        out.append(f"| {_METRIC_NAMES.get(key, key)} | {_fmt(value)} | {ci_text} |")
    return out


def _localiser_section(localiser: Mapping[str, Any], spec: PreprocessSpec) -> list[str]:
    data = localiser.get("data_summary") or {}
    lines = [
        "## Localiser",
        "",
        f"- Architecture: `{localiser.get('model_name')}` (a segmentation network: the "
        "nodule's probability at every pixel)",
        f"- Input: the scanner's image area "
        f"{'(frame found and cropped away)' if spec.frame == 'detect' else '(image as given)'}, "
        f"resized ({spec.resize}) to {spec.input_size[1]}x{spec.input_size[0]} pixels, "
        f"normalised with mean {list(spec.mean)} and std {list(spec.std)}.",
        f"- A pixel is nodule when its probability reaches {localiser.get('threshold')}; "
        f"regions under {localiser.get('min_region_px')} pixels of that input grid are dropped. "
        "The nodule box encloses every region left.",
        "- The outline and its axes are the model's estimate: the radiologist checks them "
        "(and the size that decides fine-needle aspiration) on the image.",
        "",
        "### Localiser training data",
        "",
        *(_lines(data) if data else ["No data summary was recorded."]),
        "",
    ]
    if localiser.get("training"):
        lines += ["### Localiser training", "", *_lines(localiser["training"]), ""]
    if localiser.get("val_metrics"):
        lines += ["### Localiser validation metrics", "", *_lines(localiser["val_metrics"]), ""]
    lines += ["### Localiser test metrics", "", *_test_section(localiser.get("test_metrics")), ""]
    return lines


def _localiser_card(metadata: Mapping[str, Any], localiser: Mapping[str, Any],
                    spec: PreprocessSpec) -> str:
    phantom = "phantom" in str(localiser.get("data_summary") or {}).lower()
    lines = [
        f"# Model card: {metadata.get('name')}",
        "",
        f"- Bundle version: `{metadata.get('version')}` (eutirads {metadata.get('eutirads_version')},"
        f" bundle format {metadata.get('format_version')}, created {metadata.get('created')})",
        "- Holds a nodule localiser only (no classifier: it outlines and measures, it does not "
        "give a category).",
        "",
        "## Intended use",
        "",
        "Decision support for radiologists: it outlines the thyroid nodule on an ultrasound "
        "image, boxes it and measures its axes. **It supports, and never replaces, the "
        "radiologist's judgement.** It is not a medical device and has not been validated for "
        "clinical use.",
        "",
        *_localiser_section(localiser, spec),
        "## Limits",
        "",
        *(["- **Trained on synthetic phantom images.** Never use it on patients."]
          if phantom else []),
        "- It may miss a nodule, outline a vessel or a cyst-like structure, or join two "
        "nodules; performance may drop on scanners and settings unlike the training data.",
        "",
    ]
    return "\n".join(lines)


def model_card(metadata: Mapping[str, Any], spec: PreprocessSpec | None, *,
               localiser: Mapping[str, Any] | None = None,
               localiser_spec: PreprocessSpec | None = None) -> str:
    """The card of a bundle: `metadata` is its flat metadata (`bundle.flat_metadata`),
    `spec` the classifier's input rule (None for a localiser-only bundle)."""
    if spec is None:
        if localiser is None or localiser_spec is None:
            raise ValueError("a model card needs a classifier or a localiser")
        return _localiser_card(metadata, localiser, localiser_spec)
    classes = ", ".join(spec.class_names)
    eu = set(spec.class_names) <= {"1", "2", "3", "4", "5"}
    data = metadata.get("data_summary") or {}
    phantom = "phantom" in str(data).lower()
    lines = [
        f"# Model card: {metadata.get('name')}",
        "",
        f"- Architecture: `{metadata.get('model_name')}`",
        f"- Bundle version: `{metadata.get('version')}` (eutirads {metadata.get('eutirads_version')},"
        f" bundle format {metadata.get('format_version')}, created {metadata.get('created')})",
        f"- Classes ({'EU-TIRADS' if eu else 'as labelled in the training data'}): {classes}",
        "",
        "## Intended use",
        "",
        "Decision support for radiologists who classify thyroid nodules on ultrasound images "
        "into EU-TIRADS categories. **It supports, and never replaces, the radiologist's "
        "judgement.** It is not a medical device and has not been validated for clinical use.",
        "The heatmap shows where on the image the evidence for the predicted class came from "
        "(a class-activation map); it is not an outline of the nodule.",
        "",
        "## Input",
        "",
        f"One B-mode image (RGB or grey). The scanner's frame is "
        f"{'found and cropped away' if spec.frame == 'detect' else 'not removed'}; "
        + ("the nodule box (with a margin of "
           f"{spec.roi_margin:g} of its size) is cropped when given; " if spec.crop == "roi"
           else "the whole image area is used; ")
        + f"then resized ({spec.resize}) to {spec.input_size[1]}x{spec.input_size[0]} pixels and "
          f"normalised with mean {list(spec.mean)} and std {list(spec.std)}."
        + (" Predictions average the image and its mirror image (test-time augmentation)."
           if metadata.get("tta") else ""),
        "",
        "## Training data",
        "",
        *(_lines(data) if data else ["No data summary was recorded."]),
        "",
    ]
    training = metadata.get("training") or {}
    if training:
        lines += ["## Training", "", *_lines(training), ""]
    val = metadata.get("val_metrics") or {}
    if val:
        lines += ["## Validation metrics (the split that chose the checkpoint)", "",
                  *_lines(val), ""]
    lines += ["## Test metrics", "", *_test_section(metadata.get("test_metrics")), ""]
    if localiser is not None and localiser_spec is not None:
        lines += _localiser_section(localiser, localiser_spec)
    lines += [
        "## Limits",
        "",
        *(["- **Trained on synthetic phantom images.** Its numbers say the pipeline works; "
           "they say nothing about real patients. Never use it on patients."] if phantom else []),
        "- It reads one image, not the whole examination: no lymph-node assessment, no "
        "comparison with earlier exams, no clinical context.",
        *(["- The nodule's size (which decides fine-needle aspiration) comes from the "
           "localiser's outline, an estimate to check; the FNA advice comes from the "
           "guideline's thresholds."] if localiser is not None else
          ["- The nodule's size (which decides fine-needle aspiration) is not measured by the "
           "model; the FNA advice comes from the guideline's thresholds."]),
        "- EU-TIRADS readers agree only moderately (kappa about 0.4 between experts); the "
        "reference labels carry that noise, and so does the model.",
        "- Performance may drop on scanners, settings, populations or label schemes unlike the "
        "training data; small test sets give wide intervals (see the 95% CIs).",
        "- Probabilities may be over- or under-confident; see the evaluation report's "
        "calibration section before reading them as risks.",
        "",
    ]
    return "\n".join(lines)
