"""`eutirads export-web BUNDLE --out SITE`: a bundle -> a static site that classifies
images in the browser (nothing is uploaded)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-web", help="write a static web page that runs a bundle in the browser",
        description="Write SITE/: index.html, the page's JavaScript, onnxruntime-web (wasm) "
                    "and the bundle's model files. Any static web server can host it; the "
                    "image is classified on the user's device and never sent anywhere. Works "
                    "offline. An earlier site in SITE is replaced; any other non-empty folder "
                    "is refused.")
    parser.add_argument("bundle", help="bundle folder written by 'eutirads export'")
    parser.add_argument("--out", required=True, metavar="SITE", help="site folder to write")
    parser.add_argument("--service-worker", action="store_true",
                        help="add isolate.js, a service worker that gives the page the "
                             "cross-origin isolation (COOP/COEP) headers a host like GitHub "
                             "Pages cannot send, so the model runs on several threads there "
                             "(the page reloads itself once on a first visit); not needed "
                             "where the server sends the headers")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..export.web import export_web

    out = export_web(args.bundle, args.out, service_worker=args.service_worker)
    files = [p for p in out.rglob("*") if p.is_file()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"wrote a static site to {out} ({len(files)} files, {size_mb:.1f} MB); try it with: "
          f"python3 -m http.server --bind 127.0.0.1 --directory {out} 8000")
    return 0
