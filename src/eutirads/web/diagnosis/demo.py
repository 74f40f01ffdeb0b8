"""The last step of `eutirads demo`: register the demo's bundle, create the demo account
(its password printed once), and serve the app on localhost."""

from __future__ import annotations

import secrets
from pathlib import Path

__all__ = ["DEMO_USER", "prepare_demo_site", "serve_demo"]

DEMO_USER = "demo"


def prepare_demo_site(bundle: str | Path) -> tuple[object, str, str]:
    """Register and activate `bundle`; create (or reset) the demo account as radiologist and
    reviewer. Returns (bundle row, password, API token), each new; nothing is stored in clear."""
    from .. import setup

    setup(migrate=True)
    from django.contrib.auth.models import Group

    from ..core.accounts import add_user
    from .services import register_bundle
    from .tokens import create_token

    row = register_bundle(Path(bundle), activate=True)
    password = secrets.token_urlsafe(12)
    add_user(DEMO_USER, role="radiologist", password=password, validate=False)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=DEMO_USER)
    # A reviewer too, so the demo shows the readers-versus-model report.
    user.groups.add(Group.objects.get_or_create(name="reviewer")[0])
    return row, password, create_token(user)


def _sample_image(samples: Path | None) -> Path | None:
    """One image of the demo's data to try on the page (the first PNG, in a stable order)."""
    if samples is None or not Path(samples).is_dir():
        return None
    return next(iter(sorted(Path(samples).rglob("*.png"))), None)


def serve_demo(bundle: str | Path, *, serve: bool = True, host: str = "127.0.0.1",
               port: int = 8000, samples: Path | None = None,
               dataset: Path | None = None) -> int:
    """Prepare the site, print how to use it, and (unless `serve` is False) serve it.
    `samples`: a folder of the demo's images, one of which is suggested for a first try.
    `dataset`: the demo's dataset, loaded into a labeling project the demo account can read."""
    row, password, token = prepare_demo_site(bundle)
    from django.conf import settings

    base = f"http://{host}:{port}"
    url = f"{base}/diagnosis/"
    print(f"\nDiagnosis app: model #{row.pk} ({row.name} {row.version}) is active "
          f"(data in {settings.EUTIRADS_HOME}).")
    print(f"Demo account: user '{DEMO_USER}', password {password}  (shown once; "
          f"reset with 'eutirads users add {DEMO_USER} --role radiologist')")
    print(f"API token for '{DEMO_USER}': {token}  (shown once)")
    sample = _sample_image(samples)
    image = sample or "IMAGE.png"
    print(f"  curl -H 'Authorization: Token {token}' -F image=@{image} {base}/api/v1/predict")
    if sample:
        print(f"Try the Classify page with an image such as {sample}")
    if dataset is not None:
        from ..labeling import setup_demo_project

        print(setup_demo_project(dataset, host=host, port=port)
              + f"  (the '{DEMO_USER}' account can label there too)")
    if not serve:
        print(f"Not serving (--no-serve). Start the app with: eutirads serve  ->  {url}")
        return 0
    print(f"Serving on {url}  (Ctrl+C stops)", flush=True)
    from .. import serve

    return serve(host=host, port=port, workers=2, timeout=60)
