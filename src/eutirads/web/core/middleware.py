"""Middleware: the idle-session timeout, the user's own language, no caching of what a
logged-in user is shown, and an `EutiradsError` raised by a view becomes a 4xx page (or
JSON), never a traceback."""

from __future__ import annotations

import time

from django.utils import translation
from django.utils.cache import add_never_cache_headers

from ...errors import EutiradsError
from .errors import error_response

LANGUAGE_SESSION_KEY = "_eutirads_language"


class UserLanguageMiddleware:
    """Activate the language a logged-in user chose (kept in their session at login and
    when they switch), over the browser's Accept-Language."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        chosen = session.get(LANGUAGE_SESSION_KEY) if session is not None else None
        if chosen and translation.check_for_language(chosen):
            translation.activate(chosen)
            request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)


class EutiradsErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, EutiradsError):
            return None
        return error_response(request, exception)


class ServerTimingMiddleware:
    """With EUTIRADS_SERVER_TIMING=1 (benchmarks): a `Server-Timing: cpu;dur=MS` header with
    this request's CPU time in the worker, which a browser's Resource Timing API reports.
    It tells the server's own work from time spent queueing for a core on a busy machine."""

    def __init__(self, get_response):
        from django.conf import settings
        from django.core.exceptions import MiddlewareNotUsed

        if not settings.SERVER_TIMING:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        start = time.thread_time()
        response = self.get_response(request)
        response["Server-Timing"] = f"cpu;dur={(time.thread_time() - start) * 1000:.1f}"
        return response


class PermissionsPolicyMiddleware:
    """Permissions-Policy on every response: no camera, microphone, location, ..."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.policy = settings.PERMISSIONS_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", self.policy)
        return response


class IdleTimeoutMiddleware:
    """Renew a logged-in session's expiry (SESSION_COOKIE_AGE from now) at most once a
    minute. SESSION_COOKIE_AGE is IDLE_MINUTES plus that minute, so an idle session ends
    no earlier than IDLE_MINUTES (and at most one minute later) after its last request."""

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


class PrivateResponsesMiddleware:
    """Never cache what a logged-in user is shown: pages embed patient images (data: URIs
    on the diagnosis pages), reports and labels, and the next person at a shared browser
    must not find them in its cache or history. A response that sets its own
    Cache-Control (the image views: no-store) keeps it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)  # the API's token user is set by its view
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
