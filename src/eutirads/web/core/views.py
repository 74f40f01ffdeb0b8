"""Core pages: home (what each role can do), the audit log for admins."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render

from .access import ADMIN, ROLES, role_required
from .models import AuditEvent


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
                                               "action": action, "who": who})


def admin_login(request, extra_context=None):
    """Django admin's login, replaced: anonymous users use the app's throttled login page;
    a logged-in user who is not staff gets a 403 (not a redirect loop)."""
    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    if request.user.is_authenticated:
        raise PermissionDenied("not an administrator")
    return redirect_to_login(request.GET.get("next") or "/admin/")
