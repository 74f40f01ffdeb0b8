"""Every URL pattern, walked as an anonymous user and as mallory (an account without a role):
neither gets any content, only a way to the login page or a refusal."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Pages that exist for people who are not logged in, or only end a session.
# Open to anyone: the login, the language switch (the login page has it) and the JavaScript
# translations (no data, only the interface's words).
OPEN = {"login", "logout", "admin:logout", "set_language", "javascript-catalog"}
REFUSED = {401, 403, 404, 405}
LOGIN_PAGES = ("/login/", "/admin/login/")  # the admin's login only redirects to ours


def _walk(patterns, prefix="", namespace=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield namespace + (p.name or ""), prefix + str(p.pattern)


def _concrete(pattern: str) -> str:
    """A real URL for a pattern: each converter or regex group gets a plausible value."""
    url = re.sub(r"\(\?P<[^>]+>[^)]*\)", "1", pattern)
    url = re.sub(r"<int:[^>]+>", "1", url)
    url = re.sub(r"<(?:slug|str|path):[^>]+>", "study", url)
    url = re.sub(r"<[^>]+>", "1", url)
    url = url.replace("^", "").replace("$", "").replace("\\", "")
    return "/" + url


def all_urls():
    return sorted({(name, _concrete(p)) for name, p in _walk(get_resolver().url_patterns)
                   if name not in OPEN})


def _assert_no_content(response, url, method):
    if response.status_code == 302:
        assert response.url.startswith(LOGIN_PAGES), f"{method} {url} redirects to {response.url}"
    else:
        assert response.status_code in REFUSED, f"{method} {url} gave {response.status_code}"


def test_the_walk_covers_the_labeling_and_admin_pages():
    names = {name for name, _ in all_urls()}
    assert {"home", "audit", "labeling:read", "labeling:api_save", "labeling:image",
            "labeling:agreement", "admin:index"} <= names


@pytest.mark.django_db
def test_an_anonymous_visitor_gets_no_content_from_any_url(client, project):
    for name, url in all_urls():
        _assert_no_content(client.get(url), url, "GET")
        _assert_no_content(client.post(url), url, "POST")


def test_mallory_without_a_role_gets_no_content_from_any_url(client_for, project):
    mallory = client_for("mallory")
    for name, url in all_urls():
        for method in ("get", "post"):
            response = getattr(mallory, method)(url)
            assert response.status_code in REFUSED or (
                response.status_code == 302 and response.url.startswith(LOGIN_PAGES)), \
                f"{method.upper()} {url} gave mallory {response.status_code}"
