"""WSGI entry point for gunicorn (`eutirads serve`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eutirads.web.settings")
application = get_wsgi_application()
