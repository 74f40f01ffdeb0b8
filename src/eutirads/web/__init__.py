"""The eutirads web application: a Django project inside the package.

`serve()` runs it under gunicorn (`eutirads serve`, `eutirads demo`); `setup()` configures
Django for command-line helpers (`eutirads users`, `eutirads label`) that use the ORM
without a web server. Settings come from the environment only (see `settings.py`).
"""

from __future__ import annotations

import os

__all__ = ["setup", "serve", "gunicorn_argv", "SETTINGS_MODULE"]

SETTINGS_MODULE = "eutirads.web.settings"


def setup(*, migrate: bool = False) -> None:
    """Configure Django once for this process; optionally bring the database up to date."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)


def gunicorn_argv(*, host: str, port: int, workers: int, timeout: int) -> list[str]:
    """gunicorn's command line for the app."""
    bind = f"[{host}]" if ":" in host else host
    return ["gunicorn", "--bind", f"{bind}:{port}", "--workers", str(workers),
            "--timeout", str(timeout), "--access-logfile", "-",
            # Query strings never reach the access log (they could carry anything).
            "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
            "eutirads.web.wsgi:application"]


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 2,
          timeout: int = 60) -> int:
    """Bring the database up to date, then serve the app with gunicorn until stopped."""
    import sys

    from ..errors import InputError

    if workers < 1 or not 0 < port < 65536:
        raise InputError("--workers must be >= 1 and --port within 1-65535")
    setup(migrate=True)
    from django.conf import settings
    from gunicorn.app.wsgiapp import run

    print(f"eutirads web app: http://{host}:{port}/  (data in {settings.EUTIRADS_HOME})",
          flush=True)
    sys.argv = gunicorn_argv(host=host, port=port, workers=workers, timeout=timeout)
    run()
    return 0
