"""`record(...)`: add one event to the audit log (from a view, a signal or the CLI)."""

from __future__ import annotations

from typing import Any

from .models import AuditEvent
from .network import client_ip as _client_ip


def record(action: str, *, user=None, request=None, target: str = "",
           before: Any = None, after: Any = None, username: str | None = None) -> AuditEvent:
    """Store one audit event. `user` defaults to the request's user when logged in."""
    if user is None and request is not None and getattr(request, "user", None) is not None \
            and request.user.is_authenticated:
        user = request.user
    name = username if username is not None else (user.get_username() if user is not None else "")
    return AuditEvent.objects.create(user=user, username=name[:150], action=action,
                                     target=target[:300], before=before, after=after,
                                     ip=_client_ip(request))
