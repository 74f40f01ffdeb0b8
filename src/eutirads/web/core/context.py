"""Template context: the current user's roles, for the navigation."""

from __future__ import annotations

from .access import ADMIN, READERS, REVIEWER, user_roles


def roles(request) -> dict:
    user_set = user_roles(getattr(request, "user", None))
    return {
        "user_roles": sorted(user_set),
        "is_reader": bool(user_set & set(READERS)),
        "is_reviewer": REVIEWER in user_set,
        "is_admin": ADMIN in user_set,
    }
