import math

from django import template
from django.template.defaultfilters import floatformat
from django.utils.translation import gettext as _

register = template.Library()


def _undefined(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@register.filter
def kappa(value) -> str:
    """0.43 (moderate); '—' when undefined. Landis & Koch's words for the size."""
    if _undefined(value):
        return "—"
    words = (_("poor") if value < 0 else _("slight") if value <= 0.2 else _("fair")
             if value <= 0.4 else _("moderate") if value <= 0.6 else _("substantial")
             if value <= 0.8 else _("almost perfect"))
    return f"{floatformat(value, 2)} ({words})"  # rounded, in the locale's decimal mark


@register.filter
def score(value) -> str:
    """An accuracy or kappa to 3 places in the locale's decimal mark; '—' when undefined
    (no image, or a kappa without variation), never 'nan'."""
    if _undefined(value):
        return "—"
    return floatformat(value, 3)


@register.filter
def percent(value) -> str:
    if _undefined(value):
        return "—"
    return f"{floatformat(100 * value, 0)}%"


@register.filter
def get(mapping, key):
    return mapping.get(key) if mapping else None
