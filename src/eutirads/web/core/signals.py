"""Logins, logouts, failed logins and changes made in the Django admin go to the audit log."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
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


@receiver(post_save, sender=LogEntry)
def _admin_change(sender, instance: LogEntry, created: bool, **kwargs):
    """Every add, change or delete made in the Django admin goes to the audit log too
    (the admin writes one LogEntry per action)."""
    if not created:
        return
    action = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}.get(instance.action_flag,
                                                                        "other")
    model = instance.content_type.model if instance.content_type_id else "?"
    record(f"admin_{action}", user=instance.user,
           target=f"{model} {instance.object_repr}"[:300],
           after={"change": instance.get_change_message()[:1000]})
