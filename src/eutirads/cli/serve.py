"""`eutirads serve`: migrate the database, then run the web app under gunicorn."""

from __future__ import annotations

import argparse


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
    from ..web import gunicorn_argv as argv

    return argv(host=args.host, port=args.port, workers=args.workers, timeout=args.timeout)


def _run(args: argparse.Namespace) -> int:
    from ..web import serve

    return serve(host=args.host, port=args.port, workers=args.workers, timeout=args.timeout)
