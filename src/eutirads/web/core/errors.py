"""Error pages that name the problem without echoing the request."""

from django.shortcuts import render


def forbidden(request, exception=None):
    return render(request, "core/error.html",
                  {"title": "Not allowed", "message": "Your account has no access to this page. "
                   "Ask an administrator for a role."}, status=403)


def not_found(request, exception=None):
    return render(request, "core/error.html",
                  {"title": "Not found", "message": "There is nothing at this address."},
                  status=404)
