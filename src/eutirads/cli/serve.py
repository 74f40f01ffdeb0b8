"""`eutirads serve`: migrate the database, then run the web app under gunicorn."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the web app (labeling, diagnosis) with gunicorn",
        description="Apply database migrations, then serve the web app with gunicorn "
                    "(static files included). Settings come from the environment: see "
                    "README, 'Web app settings'.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--timeout", type=int, default=60, help="worker timeout in seconds")
    parser.set_defaults(func=_run)


def gunicorn_argv(args: argparse.Namespace) -> list[str]:
    host = f"[{args.host}]" if ":" in args.host else args.host
    return ["gunicorn", "--bind", f"{host}:{args.port}", "--workers", str(args.workers),
            "--timeout", str(args.timeout), "--access-logfile", "-",
            # Query strings never reach the access log (they could carry anything).
            "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
            "eutirads.web.wsgi:application"]


def _run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..web import setup

    if args.workers < 1 or not 0 < args.port < 65536:
        raise InputError("--workers must be >= 1 and --port within 1-65535")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eutirads.web.settings")
    setup(migrate=True)
    from django.conf import settings

    print(f"eutirads web app: http://{args.host}:{args.port}/  (data in {settings.EUTIRADS_HOME})",
          flush=True)
    from gunicorn.app.wsgiapp import run

    import sys
    sys.argv = gunicorn_argv(args)
    run()
    return 0
