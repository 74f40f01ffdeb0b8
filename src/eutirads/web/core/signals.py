"""Logins, logouts and failed logins go to the audit log."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .audit import record


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record("login", user=user, request=request)
    from .middleware import LANGUAGE_SESSION_KEY
    from .models import Preference

    language = (Preference.objects.filter(user=user).values_list("language", flat=True)
                .first())
    if language and request is not None and hasattr(request, "session"):
        request.session[LANGUAGE_SESSION_KEY] = language


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record("logout", user=user, request=request)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # The attempted user name only (never the password, which Django already masks).
    record("login_failed", request=request, username=str(credentials.get("username", ""))[:150])
