"""Middleware: the idle-session timeout, and an `EutiradsError` raised by a view becomes a
400 page (or JSON), never a traceback."""

from __future__ import annotations

import time

from django.http import JsonResponse
from django.shortcuts import render

from ...errors import EutiradsError


class EutiradsErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, EutiradsError):
            return None
        message = str(exception)
        if request.headers.get("accept", "").startswith("application/json") or \
                request.content_type == "application/json":
            return JsonResponse({"error": message}, status=400)
        return render(request, "core/error.html", {"message": message}, status=400)


class IdleTimeoutMiddleware:
    """Renew a logged-in session's expiry (SESSION_COOKIE_AGE from now) at most once a
    minute: an idle session ends IDLE_MINUTES (+ at most one minute) after its last request."""

    RENEW_SECONDS = 60

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is not None and request.user.is_authenticated:
            now = int(time.time())
            if now - int(session.get("_eutirads_seen", 0)) >= self.RENEW_SECONDS:
                session["_eutirads_seen"] = now  # marks the session modified: saved, renewed
        return self.get_response(request)
