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


def _descriptor_section(descriptors: Mapping[str, Any], eu: bool,
                        metadata: Mapping[str, Any] | None = None) -> list[str]:
    """Per-descriptor heads and their validation accuracy (on images where it is known)."""
    if not descriptors:
        return ["## Descriptor heads", "",
                "None: the training data recorded no EU-TIRADS descriptors.", ""]
    lines = ["## Descriptor heads", "",
             "Beside the category, the model reads the EU-TIRADS descriptors of the nodule "
             "(each head trained only on the images where its descriptor was recorded)."
             + (" The guideline's rule turns the predicted descriptors into a category of its "
                "own, shown with the reasoning (`rule_path`)." if eu else
                " The label scheme is not EU-TIRADS, so no rule category is derived."),
             "", "| Descriptor | Values | Validation accuracy |", "|---|---|---|"]
    for name, head in descriptors.items():
        lines.append(f"| {name} | {', '.join(head.get('values', []))} | "
                     f"{_fmt(head.get('val_accuracy')) if head.get('val_accuracy') is not None else 'n/a'} |")
    scores = (metadata or {}).get("category_source_val_macro_f1") or {}
    if scores:
        lines += ["", f"The category shown is the **{(metadata or {}).get('category_source', 'head')}**"
                  " one: the best validation macro-F1 of "
                  + ", ".join(f"{k} {_fmt(float(v))}" for k, v in scores.items())
                  + " (the head wins a tie)."]
    return lines + [""]


def _measured_section(measured: Mapping[str, Any]) -> list[str]:
    """The measured descriptors (`models.nodule_features`): per-descriptor accuracy with the
    localiser's outlines on the validation and test splits."""
    val = measured.get("val_metrics") or {}
    test = measured.get("test_metrics") or {}
    lines = ["## Measured descriptors (read from the localiser's outline)", "",
             "These descriptors are not guessed from the whole picture: they are measured on "
             "the nodule the localiser outlines (its intensity against a ring of the tissue "
             "around it, the dark and bright fractions inside, taller-than-wide from its "
             "extents and moments, the outline's irregularity and contrast), and one logistic "
             f"regression per descriptor, fitted on {measured.get('train_images')} training "
             "images, reads them. Only descriptors a measured head read better on the "
             "validation split than the classifier's own head are measured here; they "
             "replace the classifier's heads of the same name. Accuracy with the localiser's outlines, on images where the descriptor is "
             "known:", "", "| Descriptor | Validation accuracy | Test accuracy |", "|---|---|---|"]
    for name in measured.get("descriptors") or {}:
        v, t = val.get(f"{name}_accuracy"), test.get(f"{name}_accuracy")
        lines.append(f"| {name} | {_fmt(v) if v is not None else 'n/a'} | "
                     f"{_fmt(t) if t is not None else 'n/a'} |")
    scores = measured.get("category_source_val_macro_f1") or {}
    if scores:
        lines += ["", f"With them, the category shown is the **{measured.get('category_source')}**"
                  " one: the best validation macro-F1 of "
                  + ", ".join(f"{k} {_fmt(float(v))}" for k, v in scores.items())
                  + " (the head wins a tie)."]
    return lines + [""]


def _outline_section(outline: Mapping[str, Any]) -> list[str]:
    """The category read inside the localiser's outline (`models.outline_pooling`)."""
    def figures(split: str) -> str:
        m = outline.get(f"{split}_metrics") or {}
        if not m:
            return "n/a"
        auc = m.get("auc_high")
        return (f"macro-F1 {_fmt(float(m['macro_f1']))}, accuracy {_fmt(float(m['accuracy']))}"
                f", AUC high {_fmt(float(auc)) if auc is not None else 'n/a'}")

    used = ("**It is the category this bundle answers with whenever the localiser finds a "
            "nodule**; where it finds none, the classifier above answers from the whole image "
            "area." if outline.get("default") else
            "It is reported beside the classifier's category, not used as the answer.")
    return ["## The category read inside the nodule's outline", "",
            "ImageNet EfficientNet-Lite features of the image area, averaged inside the "
            "localiser's outline and against a ring of tissue around it, read by a logistic "
            f"regression fitted on {outline.get('train_images')} training images and "
            f"calibrated on the validation split (temperature {_fmt(float(outline.get('temperature', 1.0)))}, "
            f"low-confidence threshold {_fmt(float(outline.get('low_confidence', 0.0)))}). "
            + used, "",
            f"- Validation: {figures('val')}",
            f"- Test (every test image read in its localiser outline): {figures('test')}", ""]


def _abstention_section(metadata: Mapping[str, Any]) -> list[str]:
    calibration = metadata.get("calibration") or {}
    abstain = metadata.get("abstain") or {}
    ood = metadata.get("ood") or {}
    if not (calibration or abstain or ood):
        return []
    lines = ["## Calibration and abstention", ""]
    if calibration:
        lines.append(f"- Probabilities are temperature-scaled on the validation split "
                     f"(T = {_fmt(float(calibration.get('temperature', 1.0)))}; expected "
                     f"calibration error {_fmt(calibration.get('ece_before'))} before, "
                     f"{_fmt(calibration.get('ece_after'))} after).")
    lines.append("- The model abstains (a result without advice) when the picture has no "
                 "ultrasound image area, is not an ultrasound frame (a photo, a drawing), is "
                 "far from every training image (pooled-feature k-NN distance above "
                 f"{_fmt(ood.get('threshold'))}, the {_fmt(ood.get('quantile'))} quantile of "
                 "the validation images' own distances), or when its calibrated confidence "
                 f"is under {_fmt(abstain.get('low_confidence'))} (the "
                 f"{_fmt(abstain.get('quantile'))} quantile of validation confidences).")
    return lines + [""]


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
        f"regions under {localiser.get('min_region_px')} pixels of that input grid are dropped, "
        f"and so are regions whose mean probability is below "
        f"{localiser.get('min_score', 0.0)} (fitted on the val split: faint outlines are "
        "what false alarms on nodule-free images look like). "
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
               localiser_spec: PreprocessSpec | None = None,
               measured: Mapping[str, Any] | None = None,
               outline: Mapping[str, Any] | None = None) -> str:
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
    lines += _descriptor_section(metadata.get("descriptors") or {}, eu, metadata)
    if measured:
        lines += _measured_section(measured)
    if outline:
        lines += _outline_section(outline)
    lines += _abstention_section(metadata)
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
