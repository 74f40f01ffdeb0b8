"""Roles and access checks.

Roles are Django groups created by a data migration: radiologist (labels), reviewer (labels,
sees agreement, adjudicates) and admin (users, projects, audit log). A logged-in user with
no role gets a 403 everywhere; an anonymous user is sent to the login page.
"""

from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

RADIOLOGIST = "radiologist"
REVIEWER = "reviewer"
ADMIN = "admin"
ROLES: tuple[str, ...] = (RADIOLOGIST, REVIEWER, ADMIN)

# Who may label: radiologists and reviewers (a reviewer is also a reader).
READERS: tuple[str, ...] = (RADIOLOGIST, REVIEWER)


def user_roles(user) -> set[str]:
    """The user's roles (empty for anonymous or inactive users). A superuser is an admin."""
    if user is None or not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_eutirads_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._eutirads_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    """True when the user holds at least one of `roles`."""
    return bool(user_roles(user) & set(roles))


def role_required(*roles: str, json: bool = False) -> Callable:
    """View decorator: anonymous -> login page (401 JSON for API-style views); logged in
    without one of `roles` -> 403."""
    if not roles:
        raise ValueError("role_required needs at least one role")

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                if json:
                    from django.http import JsonResponse

                    return JsonResponse({"error": "login required"}, status=401)
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, *roles):
                raise PermissionDenied("your account has no role that allows this page")
            return view(request, *args, **kwargs)

        wrapped.required_roles = roles
        return wrapped

    return decorator
