"""The settings module: typed environment helpers, secret key file, production checks."""

import os
import stat
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from eutirads.web import settings as web_settings


def test_a_bad_boolean_in_the_environment_fails_loudly(monkeypatch):
    monkeypatch.setenv("EUTIRADS_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="EUTIRADS_DEBUG"):
        web_settings.env_bool("EUTIRADS_DEBUG")


def test_a_bad_integer_in_the_environment_fails_loudly(monkeypatch):
    monkeypatch.setenv("EUTIRADS_IDLE_MINUTES", "ten")
    with pytest.raises(ImproperlyConfigured, match="EUTIRADS_IDLE_MINUTES"):
        web_settings.env_int("EUTIRADS_IDLE_MINUTES", 30)
    monkeypatch.setenv("EUTIRADS_IDLE_MINUTES", "0")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        web_settings.env_int("EUTIRADS_IDLE_MINUTES", 30, minimum=1)


def test_the_secret_key_is_generated_once_into_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("EUTIRADS_SECRET_KEY", raising=False)
    first = web_settings._secret_key(tmp_path)
    assert web_settings._secret_key(tmp_path) == first and len(first) >= 50
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600


def test_an_idle_session_ends_and_an_active_one_is_renewed(client_for):
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    # The expiry is renewed at most once a minute: the age covers that minute, so a session
    # renewed 59 s before a reader's last request still lives IDLE_MINUTES after it.
    assert settings.SESSION_COOKIE_AGE == settings.IDLE_MINUTES * 60 + 60
    alice = client_for("alice")
    assert alice.get("/").status_code == 200
    key = alice.session.session_key
    # Active: a request more than a minute after the last renewal pushes the expiry on.
    session = alice.session
    session["_eutirads_seen"] = 0
    session.save()
    Session.objects.filter(pk=key).update(expire_date=timezone.now() + timedelta(seconds=5))
    assert alice.get("/").status_code == 200
    renewed = Session.objects.get(pk=key).expire_date
    assert renewed > timezone.now() + timedelta(minutes=settings.IDLE_MINUTES)
    # Idle past the timeout: the session is gone, back to the login page.
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    response = alice.get("/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def _run_manage(args, tmp_path, **env):
    full = {**os.environ, "EUTIRADS_HOME": str(tmp_path), **env}
    full.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "eutirads.web.manage", *args], env=full,
                          capture_output=True, text=True, timeout=60)


def test_check_deploy_reports_nothing_in_production_mode(tmp_path):
    result = _run_manage(["check", "--deploy", "--fail-level", "DEBUG"], tmp_path,
                         EUTIRADS_PRODUCTION="1", EUTIRADS_ALLOWED_HOSTS="labeling.example.org",
                         EUTIRADS_SECRET_KEY="k3Y-" + "q8Z!vX2#pL9@wR4$tM7%nB1^cF6&hJ3*dG5(sA0)" * 2)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_typo_in_the_environment_stops_the_app_at_start(tmp_path):
    result = _run_manage(["check"], tmp_path, EUTIRADS_PRODUCTION="yes please")
    assert result.returncode != 0
    assert "EUTIRADS_PRODUCTION" in result.stderr


def test_every_response_has_a_strict_csp_and_a_permissions_policy(client_for):
    response = client_for("alice").get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "img-src 'self' blob:" in csp
    assert "camera=()" in response["Permissions-Policy"]


def test_nothing_shown_to_a_logged_in_user_is_cached(client, client_for, users, project):
    from eutirads.web.diagnosis.tokens import create_token

    alice = client_for("alice")
    for url in ("/", "/labeling/study/", "/labeling/study/mine/", "/diagnosis/",
                "/diagnosis/history/"):
        response = alice.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    token = create_token(users["alice"])
    api = client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}")
    assert api.status_code == 200 and "no-store" in api["Cache-Control"]
    # The image views keep their own header.
    image_id = alice.post("/labeling/study/api/next/", "{}", content_type="application/json"
                          ).json()["current"]["id"]
    assert alice.get(f"/labeling/study/image/{image_id}/")["Cache-Control"] == "no-store"


def test_behind_a_trusted_proxy_the_client_address_comes_from_its_header(rf, settings):
    from eutirads.web.core.network import client_ip

    settings.EUTIRADS_TRUSTED_PROXIES = ["10.0.0.2"]
    spoofed = "203.0.113.9, 198.51.100.7"  # the client wrote the first part itself
    via_proxy = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=spoofed)
    assert client_ip(via_proxy) == "198.51.100.7"
    direct = rf.get("/", REMOTE_ADDR="192.0.2.4", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_ip(direct) == "192.0.2.4"  # not a trusted proxy: its header is ignored
    assert client_ip(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="junk")) == \
        "10.0.0.2"


def test_login_throttling_and_the_audit_log_use_the_proxied_address(client, users, settings):
    from eutirads.web.core.models import AuditEvent

    settings.EUTIRADS_TRUSTED_PROXIES = ["127.0.0.1"]
    headers = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    for _ in range(5):
        client.post("/login/", {"username": "bob", "password": "wrong"}, **headers)
    assert AuditEvent.objects.filter(action="login_failed", ip="198.51.100.7").count() == 5
    locked = client.post("/login/", {"username": "bob", "password": "wrong"}, **headers)
    assert locked.status_code == 429
    # Another client behind the same proxy is not locked out with bob's attacker.
    other = client.post("/login/", {"username": "bob",
                                    "password": "correct-horse-battery-staple"},
                        REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.50")
    assert other.status_code == 302
