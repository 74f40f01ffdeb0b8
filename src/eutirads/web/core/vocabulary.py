"""The guideline's words for people, translated: descriptor names and values, high-risk
features, category texts and the FNA advice of `eutirads.categories`. Every web page
(labeling, diagnosis) takes them from here, so each is translated once. The values sent and
stored stay the vocabulary's names; only what a person reads is translated.

`advice(number, diameter_mm)` is `categories.fna_advice` in the active language: the
English sentence is matched against ADVICE_PATTERNS (tests check that every sentence
fna_advice can say has a pattern), so the rule stays written once, in the library.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from ...categories import CATEGORIES, DESCRIPTORS, fna_advice

DESCRIPTOR_LABELS = {
    "composition": _("Composition"),
    "echogenicity": _("Echogenicity"),
    "shape": _("Shape"),
    "margins": _("Margins"),
    "echogenic_foci": _("Echogenic foci"),
}
VALUE_LABELS = {
    "cystic": _("cystic"),
    "spongiform": _("spongiform"),
    "solid": _("solid"),
    "mixed": _("mixed (solid-cystic)"),
    "anechoic": _("anechoic"),
    "hyperechoic": _("hyperechoic"),
    "isoechoic": _("isoechoic"),
    "mildly_hypoechoic": _("mildly hypoechoic"),
    "markedly_hypoechoic": _("markedly hypoechoic"),
    "oval": _("oval"),
    "non_oval": _("non-oval"),
    "taller_than_wide": _("taller than wide"),
    "smooth": _("smooth"),
    "irregular": _("irregular"),
    "none": pgettext_lazy("echogenic foci", "none"),
    "macrocalcifications": _("macrocalcifications"),
    "microcalcifications": _("microcalcifications"),
}
# The high-risk features as `rule_path` says them (keyed by value, as in rule_table()).
HIGH_RISK_TEXT = {
    "non_oval": _("non-oval shape"),
    "taller_than_wide": _("taller-than-wide shape"),
    "irregular": _("irregular margins"),
    "microcalcifications": _("microcalcifications"),
    "markedly_hypoechoic": _("marked hypoechogenicity"),
}
# The category texts of `eutirads.categories.CATEGORIES`, translated by message id.
CATEGORY_TEXT = {
    1: (_("Normal"), _("No nodule."), _("Normal thyroid parenchyma, no focal lesion.")),
    2: (_("Benign"), _("Pure (anechoic) cyst or entirely spongiform nodule."),
        _("Anechoic cyst; or a nodule made entirely of small cystic spaces.")),
    3: (_("Low risk"), _("Oval, smooth margins, isoechoic or hyperechoic, no high-risk feature."),
        _("Oval shape; smooth margins; iso- or hyperechoic solid part; no microcalcifications.")),
    4: (_("Intermediate risk"),
        _("Oval, smooth margins, mildly hypoechoic, no high-risk feature."),
        _("Oval shape; smooth margins; solid part slightly darker than thyroid but brighter "
          "than strap muscles.")),
    5: (_("High risk"), _("At least one high-risk feature."),
        _("Non-oval or taller-than-wide shape; irregular margins; microcalcifications; marked "
          "hypoechogenicity (darker than strap muscles).")),
}
# Group keys on the reading screen: a digit sets a value in the active group and moves to
# the next one, so a full reading is five digits and Enter.
GROUP_KEYS = {"composition": "Q", "echogenicity": "W", "shape": "E", "margins": "R",
              "echogenic_foci": "T"}


def descriptor_groups() -> list[dict]:
    """The descriptor controls the reading template renders, in reading order."""
    return [{"name": name, "label": DESCRIPTOR_LABELS[name], "key": GROUP_KEYS[name],
             "values": [{"value": value, "label": VALUE_LABELS[value], "key": str(i)}
                        for i, value in enumerate(values, start=1)]}
            for name, values in DESCRIPTORS.items()]


def categories() -> list[dict]:
    return [{"number": c.number, "name": CATEGORY_TEXT[c.number][0],
             "definition": CATEGORY_TEXT[c.number][1], "features": CATEGORY_TEXT[c.number][2],
             "risk": c.risk_text} for c in CATEGORIES.values()]


# fna_advice's sentences (regular expressions on its English text) -> translatable text.
ADVICE_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^No nodule: no FNA\.$"), _("No nodule: no FNA.")),
    (re.compile(r"^Benign pattern: FNA not indicated \(only to relieve symptoms\)\.$"),
     _("Benign pattern: FNA not indicated (only to relieve symptoms).")),
    (re.compile(r"^FNA advised if the largest diameter is over (?P<t>[\d.]+) mm\. At or under "
                r"10 mm: active surveillance or FNA\.$"),
     _("FNA advised if the largest diameter is over %(t)s mm. At or under 10 mm: active "
       "surveillance or FNA.")),
    (re.compile(r"^FNA advised if the largest diameter is over (?P<t>[\d.]+) mm\.$"),
     _("FNA advised if the largest diameter is over %(t)s mm.")),
    (re.compile(r"^FNA advised: (?P<d>[\d.e+-]+) mm is over the (?P<t>[\d.]+) mm threshold\.$"),
     _("FNA advised: %(d)s mm is over the %(t)s mm threshold.")),
    (re.compile(r"^(?P<d>[\d.e+-]+) mm is at or under (?P<t>[\d.]+) mm: active surveillance or "
                r"FNA\.$"),
     _("%(d)s mm is at or under %(t)s mm: active surveillance or FNA.")),
    (re.compile(r"^No FNA for now: (?P<d>[\d.e+-]+) mm is at or under the (?P<t>[\d.]+) mm "
                r"threshold; follow-up\.$"),
     _("No FNA for now: %(d)s mm is at or under the %(t)s mm threshold; follow-up.")),
]


def translate_advice(english: str) -> str:
    """One of fna_advice's sentences in the active language (unchanged if unknown)."""
    from django.utils.formats import number_format

    for pattern, text in ADVICE_PATTERNS:
        match = pattern.match(english)
        if match:
            values = {k: number_format(float(v)) if "." in v else v
                      for k, v in match.groupdict().items()}
            return str(text) % values
    return english


def advice(category_number: int, diameter_mm: float | None = None) -> str:
    """`categories.fna_advice` in the active language."""
    return translate_advice(fna_advice(category_number, diameter_mm))
