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

    assert settings.SESSION_COOKIE_AGE == settings.IDLE_MINUTES * 60
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
    assert renewed > timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)
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
