"""Core pages: home (what each role can do), the audit log for admins, the language switch,
the password change."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .access import ADMIN, ROLES, role_required
from .audit import record
from .middleware import LANGUAGE_SESSION_KEY
from .models import AuditEvent, Preference


@role_required(*ROLES)
def home(request):
    from ..labeling.models import Project

    projects = Project.objects.order_by("name")
    return render(request, "core/home.html", {"projects": projects})


@role_required(ADMIN)
def audit_log(request):
    events = AuditEvent.objects.all()
    action = request.GET.get("action", "").strip()
    who = request.GET.get("user", "").strip()
    if action:
        events = events.filter(action=action)
    if who:
        events = events.filter(username=who)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    actions = AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()
    return render(request, "core/audit.html", {"page": page, "actions": actions,
                                               "action": action, "who": who,
                                               "TIME_ZONE": settings.TIME_ZONE})


def admin_login(request, extra_context=None):
    """Django admin's login, replaced: anonymous users use the app's throttled login page;
    a logged-in user who is not staff gets a 403 (not a redirect loop)."""
    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    if request.user.is_authenticated:
        raise PermissionDenied("not an administrator")
    return redirect_to_login(request.GET.get("next") or "/admin/")


class LanguageForm(forms.Form):
    language = forms.ChoiceField(choices=[("", "")] + list(settings.LANGUAGES), required=False)


@require_POST
def set_language(request):
    """The language switch: stored for the logged-in user (and in the language cookie, so
    the login page follows too). An empty choice goes back to the browser's language."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        return redirect("home")
    language = form.cleaned_data["language"]
    # Back to the page the switch was on (same-origin Referer only).
    target = request.META.get("HTTP_REFERER", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/"
    response = redirect(target)
    if request.user.is_authenticated:
        Preference.objects.update_or_create(user=request.user, defaults={"language": language})
    if language:
        request.session[LANGUAGE_SESSION_KEY] = language
        response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language,
                            max_age=settings.LANGUAGE_COOKIE_AGE, samesite="Lax",
                            secure=settings.SESSION_COOKIE_SECURE, httponly=True)
    else:
        request.session.pop(LANGUAGE_SESSION_KEY, None)
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
    return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Users change their own password (Django's form: old password, validators)."""

    template_name = "registration/password_change.html"
    success_url = reverse_lazy("home")

    def form_valid(self, form):
        response = super().form_valid(form)
        record("password_change", user=self.request.user, request=self.request)
        messages.info(self.request, _("Your password was changed."))
        return response
