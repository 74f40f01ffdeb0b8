"""Translated names for the descriptor vocabulary of `eutirads.categories` and the keys
that set them on the reading screen. The values stay the vocabulary's names; only what a
person reads is translated."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from ...categories import DESCRIPTORS

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
    from ...categories import CATEGORIES

    return [{"number": c.number, "name": CATEGORY_TEXT[c.number][0],
             "definition": CATEGORY_TEXT[c.number][1], "features": CATEGORY_TEXT[c.number][2],
             "risk": c.risk_text} for c in CATEGORIES.values()]
