import math

from django import template

register = template.Library()


@register.filter
def kappa(value) -> str:
    """0.43 (moderate); '–' when undefined. Landis & Koch's words for the size."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    words = ("poor" if value < 0 else "slight" if value <= 0.2 else "fair" if value <= 0.4
             else "moderate" if value <= 0.6 else "substantial" if value <= 0.8
             else "almost perfect")
    return f"{value:.2f} ({words})"


@register.filter
def percent(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.0f}%"


@register.filter
def get(mapping, key):
    return mapping.get(key) if mapping else None
