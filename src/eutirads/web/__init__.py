"""The eutirads web application: a Django project inside the package.

`eutirads serve` runs it under gunicorn; `setup()` configures Django for command-line
helpers (`eutirads users`, `eutirads label`) that use the ORM without a web server.
Settings come from the environment only (see `settings.py`).
"""

from __future__ import annotations

import os

__all__ = ["setup", "SETTINGS_MODULE"]

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
