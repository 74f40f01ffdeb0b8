"""What the diagnosis pages, the printable report and the PDF show, as template contexts
built from a `Diagnosis` (just computed) or a stored `Prediction` (history, report)."""

from __future__ import annotations

from ...categories import CATEGORIES, EU_TIRADS_LABELS, fna_advice
from ...inference.diagnosis import ABSTAIN_REASONS, DESCRIPTOR_VALUES, outline_geometry
from . import services

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
        rows.append({"name": name, "title": name.replace("_", " "), "value": value,
                     "shown": value.replace("_", " ") if value else "",
                     "percent": None if probability is None else round(100 * probability, 1),
                     "decided": mine, "decided_shown": mine.replace("_", " "),
                     "differs": bool(mine) and mine != value,
                     "choices": [(c, c.replace("_", " ")) for c in choices]})
    return rows


def size_text(diameter_mm, source: str) -> str:
    if not diameter_mm:
        return ""
    how = {"measured": "measured from the drawn box", "given": "as given",
           "localiser": "measured on the model's outline"}.get(source, source)
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
        "decided_advice": fna_advice(decided_cat.number, prediction.diameter_mm)
        if decided_cat else "",
        "descriptor_rows": descriptor_rows(prediction.descriptors,
                                           decision.descriptors if decision else None),
        "category_choices": [(str(n), c.name) for n, c in CATEGORIES.items()],
        "abstain_text": ABSTAIN_REASONS.get(prediction.abstain_reason, ("", "")),
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
