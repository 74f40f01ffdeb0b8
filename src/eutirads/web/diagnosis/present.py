"""What the diagnosis pages, the printable report and the PDF show, as template contexts
built from a `Diagnosis` (just computed) or a stored `Prediction` (history, report)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ...categories import CATEGORIES, EU_TIRADS_LABELS, fna_advice
from ...inference.diagnosis import DESCRIPTOR_VALUES, outline_geometry
from ..core.vocabulary import CATEGORY_TEXT, DESCRIPTOR_LABELS, VALUE_LABELS, translate_advice
from . import services

# The library's abstention texts (`inference.diagnosis.ABSTAIN_REASONS`), translated.
ABSTAIN_TEXT = {
    "no-ultrasound-area": (
        gettext_lazy("No ultrasound image area was found in this picture."),
        gettext_lazy("Upload a frame from the scanner (JPEG, PNG or DICOM) showing the B-mode "
                     "image.")),
    "not-ultrasound": (
        gettext_lazy("This picture does not look like a grey-scale ultrasound image."),
        gettext_lazy("Upload a thyroid B-mode frame; photographs, drawings, colour images and "
                     "test patterns are not read.")),
    "out-of-distribution": (
        gettext_lazy("This image is unlike the images the model was trained and tested on, "
                     "so its answer would not be reliable."),
        gettext_lazy("Read the image yourself; if it is a thyroid ultrasound, report it so "
                     "the model can be retrained on such images.")),
    "low-confidence": (
        gettext_lazy("The model is not confident enough in any category."),
        gettext_lazy("Read the image yourself, or try a tighter box around the nodule.")),
}


def abstain_text(reason: str) -> tuple[str, str]:
    """(what it means, what to do), in the page's language."""
    meaning, todo = ABSTAIN_TEXT.get(reason, (
        gettext_lazy("The model declined to answer for this image."),
        gettext_lazy("Read the image yourself.")))
    return str(meaning), str(todo)

__all__ = ["bars", "descriptor_rows", "size_text", "bundle_context", "prediction_context",
           "has_decision"]


def bundle_context(bundle) -> dict:
    # Readable names ("kappa quadratic"); counts such as n shown without decimals.
    metrics = {k.replace("_", " "): v for k, v in bundle.test_metrics.items()} if bundle else {}
    return {"bundle": bundle, "bundle_metrics": metrics}


def bars(label: str, probabilities: dict) -> list[dict]:
    order = [c for c in EU_TIRADS_LABELS if c in probabilities] + \
        [c for c in probabilities if c not in EU_TIRADS_LABELS]
    return [{"label": k, "name": CATEGORIES[int(k)].name if k in EU_TIRADS_LABELS else k,
             "percent": round(100 * float(probabilities[k]), 1), "predicted": k == label}
            for k in order]


def descriptor_rows(descriptors: dict | None, decided: dict | None = None) -> list[dict]:
    """One row per descriptor: the model's value and confidence, the radiologist's value,
    and the choices (the one vocabulary, `categories`)."""
    rows = []
    for name, choices in DESCRIPTOR_VALUES.items():
        entry = (descriptors or {}).get(name) or {}
        value = str(entry.get("value") or "")
        probability = (entry.get("probabilities") or {}).get(value)
        mine = str((decided or {}).get(name) or "")
        rows.append({"name": name, "title": _shown(DESCRIPTOR_LABELS, name), "value": value,
                     "shown": _shown(VALUE_LABELS, value) if value else "",
                     "percent": None if probability is None else round(100 * probability, 1),
                     "decided": mine, "decided_shown": _shown(VALUE_LABELS, mine) if mine else "",
                     "differs": bool(mine) and mine != value,
                     "choices": [(c, _shown(VALUE_LABELS, c)) for c in choices]})
    return rows


def _shown(labels: dict, key: str) -> str:
    """The translated name of a vocabulary key (the key itself, readable, if unknown)."""
    return str(labels.get(key) or key.replace("_", " "))


def size_text(diameter_mm, source: str) -> str:
    if not diameter_mm:
        return ""
    how = {"measured": _("measured from the drawn box"), "given": _("as given"),
           "localiser": _("measured on the model's outline")}.get(source, source)
    return f"{diameter_mm:g} mm ({how})"


def prediction_context(prediction) -> dict:
    """What the prediction page and its printable report show: the model's answer, the
    radiologist's decision beside it, the outline over the kept image (or alone)."""
    label = prediction.label
    cat = CATEGORIES[int(label)] if label in EU_TIRADS_LABELS else None
    decision = getattr(prediction, "decision", None) if has_decision(prediction) else None
    area = prediction.image_area or {}
    kept = bool(prediction.image_name) and (services.image_folder() /
                                            prediction.image_name).is_file()
    offset = (area.get("x0", 0), area.get("y0", 0)) if kept else (0, 0)
    width = max(1, (area["x1"] - area["x0"]) if kept and area else prediction.width)
    height = max(1, (area["y1"] - area["y0"]) if kept and area else prediction.height)
    decided_cat = CATEGORIES[int(decision.label)] if decision and \
        decision.label in EU_TIRADS_LABELS else None
    return {
        "p": prediction, "category": cat, "bars": bars(label, prediction.probabilities or {}),
        "confidence_percent": round(100 * prediction.confidence, 1),
        "decision": decision, "decided_category": decided_cat,
        "decided_advice": translate_advice(fna_advice(decided_cat.number,
                                                      prediction.diameter_mm))
        if decided_cat else "",
        "advice_text": translate_advice(prediction.advice),
        "rule_differs": rule_differs(prediction.rule_path, label),
        **category_texts(label), "decided_name": category_texts(decision.label)["category_name"]
        if decision else "",
        "descriptor_rows": descriptor_rows(prediction.descriptors,
                                           decision.descriptors if decision else None),
        "category_choices": [(str(n), c.name) for n, c in CATEGORIES.items()],
        "abstain_text": abstain_text(prediction.abstain_reason),
        "overlay": outline_geometry(prediction.nodule, prediction.box, prediction.box_source,
                                    offset=offset, size=(width, height)),
        "image_kept": kept, "view_width": width, "view_height": height,
        "size_text": size_text(prediction.diameter_mm, prediction.diameter_source),
        "disclaimer": services.DISCLAIMER, **bundle_context(prediction.bundle),
    }


def has_decision(prediction) -> bool:
    from .models import Decision

    try:
        return prediction.decision is not None
    except Decision.DoesNotExist:
        return False




# Tags a model card may use once rendered (Markdown's output, nothing active).
_CARD_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "li", "strong", "em", "code",
              "pre", "blockquote", "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "a"}


def render_card(markdown_text: str) -> str:
    """A bundle's model card (Markdown) as HTML safe to show: rendered with the Markdown
    library (tables extension), then sanitised with nh3 (no script, no style, no events,
    links only http(s) and marked rel=noopener)."""
    import markdown
    import nh3

    html = markdown.markdown(markdown_text or "", extensions=["tables", "fenced_code"],
                             output_format="html")
    return nh3.clean(html, tags=_CARD_TAGS, attributes={"a": {"href", "title"},
                                                        "th": {"align"}, "td": {"align"}},
                     url_schemes={"http", "https"}, link_rel="noopener noreferrer")


def category_texts(label: str) -> dict:
    """The category's name, definition and risk in the page's language ("" for a label of
    another scheme)."""
    if label not in EU_TIRADS_LABELS:
        return {"category_name": "", "category_definition": "", "category_risk": ""}
    name, definition, _features = CATEGORY_TEXT[int(label)]
    return {"category_name": str(name), "category_definition": str(definition),
            "category_risk": CATEGORIES[int(label)].risk_text}


def rule_differs(rule_path: str, label: str) -> bool:
    """Whether the guideline's rule on the predicted descriptors ends on another category
    than the one shown (the bundle's category head): worth a word to the radiologist."""
    return bool(rule_path) and label in EU_TIRADS_LABELS and \
        not rule_path.rstrip().endswith(f"EU-TIRADS {label}")
