"""Per-user API tokens: random, shown once, stored only as their SHA-256; optional expiry,
revocation, and every creation, refused use and revocation in the audit log.

A token has 256 bits of entropy, so a plain SHA-256 (no salt, no slow hash) cannot be
reversed or guessed, and lookup stays one indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from ...errors import InputError
from .models import ApiToken

__all__ = ["create_token", "user_for_token", "check_token", "token_from_header",
           "revoke_token", "revoke_all", "list_tokens", "MAX_EXPIRY_DAYS"]

MAX_EXPIRY_DAYS = 3650


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _record(action: str, **kwargs) -> None:
    from ..core.audit import record

    record(action, **kwargs)


def create_token(user, *, expires_days: int | None = None, by=None, request=None) -> str:
    """A new token for `user` (expiring after `expires_days`, or never); the clear text is
    returned once and never stored. Audited."""
    if expires_days is not None and not 1 <= int(expires_days) <= MAX_EXPIRY_DAYS:
        raise InputError(f"--expires must be 1-{MAX_EXPIRY_DAYS} days")
    token = secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(days=int(expires_days)) if expires_days else None
    row = ApiToken.objects.create(user=user, key_hash=_digest(token), prefix=token[:8],
                                  expires_at=expires)
    _record("diagnosis.token_create", user=by or user, request=request,
            target=f"token #{row.pk}",
            after={"owner": user.get_username(), "prefix": row.prefix,
                   "expires_at": expires.isoformat() if expires else None})
    return token


def token_from_header(header: str | None) -> str | None:
    """The token in an Authorization header ("Token <t>" or "Bearer <t>"), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        return None
    return value.strip()


def check_token(token: str) -> tuple[object | None, str]:
    """(the active user owning `token`, "") or (None, why: "unknown", "revoked", "expired",
    "inactive user")."""
    if not token or len(token) > 200:
        return None, "unknown"
    row = ApiToken.objects.select_related("user").filter(key_hash=_digest(token)).first()
    if row is None:
        return None, "unknown"
    now = timezone.now()
    status = row.status(now)
    if status != "active":
        return None, status
    if not row.user.is_active:
        return None, "inactive user"
    # Update at most once a minute: a write per request would serialise SQLite.
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user, ""


def user_for_token(token: str, *, request=None):
    """The active user owning `token`, or None (the refusal is audited, without the token)."""
    user, why = check_token(token)
    if user is None:
        row = ApiToken.objects.filter(key_hash=_digest(token or "")).first()
        _record("diagnosis.token_refused", request=request,
                target=f"token #{row.pk}" if row else "unknown token", after={"reason": why},
                user=row.user if row else None)
    return user


def list_tokens(username: str | None = None):
    rows = ApiToken.objects.select_related("user").order_by("user__username", "-created_at")
    return rows.filter(user__username=username) if username else rows


def revoke_token(token_id: int, *, by=None, request=None) -> ApiToken:
    row = ApiToken.objects.select_related("user").filter(pk=token_id).first()
    if row is None:
        raise InputError(f"no API token with id {token_id} (see 'eutirads users tokens')")
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
        _record("diagnosis.token_revoke", user=by, request=request, target=f"token #{row.pk}",
                after={"owner": row.user.get_username(), "prefix": row.prefix},
                username=None if by else "(command line)")
    return row


def revoke_all(user, *, by=None, request=None, reason: str = "") -> int:
    """Revoke every token of `user` that is not revoked yet; how many."""
    rows = list(ApiToken.objects.filter(user=user, revoked_at__isnull=True))
    now = timezone.now()
    ApiToken.objects.filter(pk__in=[r.pk for r in rows]).update(revoked_at=now)
    for row in rows:
        _record("diagnosis.token_revoke", user=by, request=request, target=f"token #{row.pk}",
                after={"owner": user.get_username(), "prefix": row.prefix,
                       "reason": reason or "all of the user's tokens"},
                username=None if by else "(command line)")
    return len(rows)


@receiver(post_delete, sender=ApiToken)
def _audit_delete(sender, instance, **kwargs) -> None:
    """A token deleted anywhere (the Django admin, a user's deletion) is audited too."""
    by = getattr(instance, "_deleted_by", None)  # set by the admin
    try:
        owner = instance.user.get_username()
    except Exception:  # noqa: BLE001 - the owner itself is being deleted
        owner = ""
    _record("diagnosis.token_delete", user=by, target=f"token #{instance.pk}",
            after={"owner": owner, "prefix": instance.prefix},
            username=None if by else "(deleted with its user)")
