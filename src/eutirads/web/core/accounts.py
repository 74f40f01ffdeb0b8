"""Account helpers shared by the CLI and the tests."""

from __future__ import annotations

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from ...errors import InputError
from .access import ADMIN, ROLES
from .audit import record


def add_user(name: str, *, role: str, password: str | None, validate: bool = True) -> bool:
    """Create `name` with `role` (or update an existing account's role and password).

    Returns True when the account is new. An admin is also Django staff and superuser, so
    the Django admin pages (users, projects) work for them."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > 150 or any(c.isspace() for c in name):
        raise InputError("a user name must be 1-150 characters without spaces")
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=name)
        if password is not None:
            if validate:
                try:
                    password_validation.validate_password(password, user)
                except ValidationError as exc:
                    raise InputError("password refused: " + " ".join(exc.messages)) from None
            user.set_password(password)
        user.is_active = True
        user.is_staff = user.is_superuser = role == ADMIN
        user.save()
        # get_or_create: the roles migration made the groups, but a flushed test database
        # (transactional tests) has lost them.
        user.groups.set([Group.objects.get_or_create(name=role)[0]])
        record("user_add" if created else "user_update", username="(command line)",
               target=f"user {name}", after={"role": role})
    return created


def list_users() -> list[tuple[str, list[str], bool]]:
    User = get_user_model()
    rows = []
    for user in User.objects.order_by("username").prefetch_related("groups"):
        roles = sorted(g.name for g in user.groups.all() if g.name in ROLES)
        rows.append((user.username, roles, user.is_active))
    return rows
