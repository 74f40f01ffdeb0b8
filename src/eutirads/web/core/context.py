"""Template context: the current user's roles, for the navigation."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from .access import ADMIN, RADIOLOGIST, READERS, REVIEWER, user_roles

ROLE_NAMES = {RADIOLOGIST: _("radiologist"), REVIEWER: _("reviewer"), ADMIN: _("admin")}


def roles(request) -> dict:
    user_set = user_roles(getattr(request, "user", None))
    return {
        "user_roles": sorted(user_set),
        "user_role_names": [ROLE_NAMES.get(r, r) for r in sorted(user_set)],
        "is_reader": bool(user_set & set(READERS)),
        "is_reviewer": REVIEWER in user_set,
        "is_admin": ADMIN in user_set,
    }
