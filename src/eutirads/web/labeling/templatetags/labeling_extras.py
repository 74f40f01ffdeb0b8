import math

from django import template
from django.utils.formats import number_format
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
    return f"{number_format(value, 2)} ({words})"


@register.filter
def percent(value) -> str:
    if _undefined(value):
        return "—"
    return f"{number_format(100 * value, 0)}%"


@register.filter
def get(mapping, key):
    return mapping.get(key) if mapping else None
