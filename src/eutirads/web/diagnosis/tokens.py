"""Per-user API tokens: random, shown once, stored only as their SHA-256.

A token has 256 bits of entropy, so a plain SHA-256 (no salt, no slow hash) cannot be
reversed or guessed, and lookup stays one indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from .models import ApiToken

__all__ = ["create_token", "user_for_token", "token_from_header"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(user) -> str:
    """A new token for `user`; the clear text is returned once and never stored."""
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_digest(token), prefix=token[:8])
    return token


def token_from_header(header: str | None) -> str | None:
    """The token in an Authorization header ("Token <t>" or "Bearer <t>"), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        return None
    return value.strip()


def user_for_token(token: str):
    """The active user owning `token`, or None."""
    if not token or len(token) > 200:
        return None
    row = ApiToken.objects.select_related("user").filter(key_hash=_digest(token)).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    # Update at most once a minute: a write per request would serialise SQLite.
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user
