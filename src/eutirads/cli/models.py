"""`eutirads models add BUNDLE [--activate]`, `models list`, `models activate ID`: the
diagnosis app's model registry."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="register export bundles for the diagnosis app and choose the active one",
        description="Model bundles for the diagnosis page and API. A bundle is copied into "
                    "the data folder (EUTIRADS_HOME/bundles/); exactly one is active.")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="register a bundle made by 'eutirads export'")
    add.add_argument("bundle", type=Path, help="bundle folder (model.onnx, preprocess.json, ...)")
    add.add_argument("--activate", action="store_true",
                     help="make it the active model (the first bundle registered always is)")
    add.set_defaults(func=_add)
    listing = sub.add_parser("list", help="list registered bundles")
    listing.set_defaults(func=_list)
    activate = sub.add_parser("activate", help="make a registered bundle the active model")
    activate.add_argument("id", type=int, help="the bundle's id (see 'models list')")
    activate.set_defaults(func=_activate)


def _setup() -> None:
    from ..web import setup

    setup(migrate=True)


def _add(args: argparse.Namespace) -> int:
    _setup()
    from ..web.diagnosis.services import register_bundle

    bundle = register_bundle(args.bundle, activate=args.activate)
    state = "active" if bundle.active else "not active"
    print(f"registered model #{bundle.pk}: {bundle.name} {bundle.version} ({state})")
    return 0


def _list(args: argparse.Namespace) -> int:
    _setup()
    from ..web.diagnosis.models import ModelBundle

    rows = list(ModelBundle.objects.order_by("id"))
    if not rows:
        print("no model registered; add one with 'eutirads models add BUNDLE --activate'")
        return 0
    for b in rows:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in list(b.test_metrics.items())[:3])
        print(f"{'*' if b.active else ' '} #{b.pk}\t{b.name}\t{b.version}\t"
              f"{b.added_at:%Y-%m-%d %H:%M}\t{metrics or 'no test metrics'}")
    return 0


def _activate(args: argparse.Namespace) -> int:
    _setup()
    from ..web.diagnosis.services import activate_bundle

    bundle = activate_bundle(args.id)
    print(f"model #{bundle.pk} ({bundle.name} {bundle.version}) is now active")
    return 0
