from django import template

register = template.Library()


@register.filter
def minutes(delta) -> int:
    """Whole minutes of a timedelta, rounded up (the lock-out page's duration)."""
    if delta is None:
        return 0
    return max(1, -(-int(delta.total_seconds()) // 60))
