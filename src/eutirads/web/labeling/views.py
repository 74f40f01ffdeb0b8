"""Labeling views: thin; access check, validate, call `queue`/`agreement`, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render

from ..core.access import ADMIN, READERS, REVIEWER, role_required
from .models import Project


@role_required(*READERS, ADMIN)
def projects(request):
    return render(request, "labeling/projects.html", {"projects": Project.objects.all()})


@role_required(*READERS, ADMIN)
def project(request, project):
    obj = get_object_or_404(Project, name=project)
    return render(request, "labeling/project.html", {"project": obj})
