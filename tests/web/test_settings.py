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


def test_sessions_end_after_the_idle_timeout_and_renew_on_each_request():
    from django.conf import settings

    assert settings.SESSION_COOKIE_AGE == settings.IDLE_MINUTES * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST


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
