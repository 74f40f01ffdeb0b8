"""An `EutiradsError` raised by a view becomes a 400 page (or JSON), never a traceback."""

from __future__ import annotations

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
