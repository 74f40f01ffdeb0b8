"""Errors on the web: one mapping from the `eutirads.errors` family to an HTTP status,
used by the middleware, the JSON APIs and the views; and the error pages, which name the
problem without echoing the request.

`status_for(exc)` and `error_response(request, exc)` are the whole API: an exception may
carry its own `status` (e.g. an upload that is too large: 413, a full queue: 409).
"""

from __future__ import annotations

import logging

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from ...errors import EutiradsError, ModelError

__all__ = ["status_for", "error_response", "wants_json", "forbidden", "not_found"]

def status_for(exc: BaseException) -> int:
    """The HTTP status of an expected failure: its own `status`, 503 for a model that
    cannot be used, 400 for any other EutiradsError."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 600:
        return status
    if isinstance(exc, ModelError):
        return 503
    if isinstance(exc, EutiradsError):
        return 400
    return 500


def wants_json(request) -> bool:
    return (request.headers.get("accept", "").startswith("application/json")
            or request.content_type == "application/json"
            or request.path.startswith("/api/"))


def error_response(request, exc: BaseException, *, json: bool | None = None) -> HttpResponse:
    """A one-line error as JSON `{"error": ...}` or as the error page, with its status."""
    status = status_for(exc)
    if json if json is not None else wants_json(request):
        return JsonResponse({"error": str(exc)}, status=status)
    return render(request, "core/error.html", {"message": str(exc)}, status=status)


class NoTracebackFor4xx(logging.Filter):
    """Logging filter for django.request: a 403 or 404 is an answer, not a fault; keep the
    one warning line Django writes, drop the traceback it attaches."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= int(getattr(record, "status_code", 500) or 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True


def forbidden(request, exception=None):
    message = str(exception) if exception and str(exception) else \
        _("Your account has no access to this page. Ask an administrator for a role.")
    if wants_json(request):
        return JsonResponse({"error": message}, status=403)
    return render(request, "core/error.html", {"title": _("Not allowed"), "message": message},
                  status=403)


def not_found(request, exception=None):
    return render(request, "core/error.html",
                  {"title": _("Not found"), "message": _("There is nothing at this address.")},
                  status=404)
