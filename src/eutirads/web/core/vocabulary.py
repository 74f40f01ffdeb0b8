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


# fna_advice's sentences (regular expressions on its English text) -> translatable text,
# most specific first.
_RULE = r"FNA is indicated for EU-TIRADS (?P<n>\d) nodules over (?P<t>[\d.]+) mm"
_SMALL = (r"for EU-TIRADS 5 nodules of (?P<t2>[\d.]+) mm or less, active surveillance or FNA "
          r"is considered")
_D = r"(?P<d>[\d.e+-]+)"
ADVICE_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^No nodule: FNA is not indicated\.$"), _("No nodule: FNA is not indicated.")),
    (re.compile(r"^FNA is not indicated for EU-TIRADS 2 \(benign\) nodules, except as a "
                r"therapeutic procedure for symptoms\.$"),
     _("FNA is not indicated for EU-TIRADS 2 (benign) nodules, except as a therapeutic "
       "procedure for symptoms.")),
    (re.compile(rf"^{_RULE}; {_SMALL}\. This nodule measures {_D} mm\.$"),
     _("FNA is indicated for EU-TIRADS %(n)s nodules over %(t)s mm; for EU-TIRADS 5 nodules "
       "of %(t2)s mm or less, active surveillance or FNA is considered. This nodule "
       "measures %(d)s mm.")),
    (re.compile(rf"^{_RULE}; {_SMALL}\.$"),
     _("FNA is indicated for EU-TIRADS %(n)s nodules over %(t)s mm; for EU-TIRADS 5 nodules "
       "of %(t2)s mm or less, active surveillance or FNA is considered.")),
    (re.compile(rf"^{_RULE}; this nodule measures {_D} mm, at or under the threshold: FNA "
                r"is not indicated by size; follow-up per the guideline\.$"),
     _("FNA is indicated for EU-TIRADS %(n)s nodules over %(t)s mm; this nodule measures "
       "%(d)s mm, at or under the threshold: FNA is not indicated by size; follow-up per "
       "the guideline.")),
    (re.compile(rf"^{_RULE}; this nodule measures {_D} mm\.$"),
     _("FNA is indicated for EU-TIRADS %(n)s nodules over %(t)s mm; this nodule measures "
       "%(d)s mm.")),
    (re.compile(rf"^{_RULE}\.$"), _("FNA is indicated for EU-TIRADS %(n)s nodules over %(t)s mm.")),
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
