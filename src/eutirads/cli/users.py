"""`eutirads users add NAME --role ROLE`: create or update an account without a browser.

The password is read from stdin when it is not a terminal (one line), or prompted twice
with getpass; never from the command line, where it would land in the shell history and
the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..errors import InputError

ROLES = ("radiologist", "reviewer", "admin")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("users", help="manage web-app accounts and roles")
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account (or reset its password and role)",
                         description="Create an account with a role. The password is read "
                                     "from stdin when piped, otherwise prompted twice.")
    add.add_argument("name", help="user name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.set_defaults(func=_add)
    listing = sub.add_parser("list", help="list accounts and their roles")
    listing.set_defaults(func=_list)
    from .models import register_token_command  # `users token NAME` (diagnosis API)

    register_token_command(sub)


def read_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        password = stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise InputError("the two passwords differ")
    if not password:
        raise InputError("empty password")
    return password


def _add(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.core.accounts import add_user

    password = read_password()
    created = add_user(args.name, role=args.role, password=password)
    print(f"{'created' if created else 'updated'} user {args.name} with role {args.role}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.core.accounts import list_users

    for name, roles, active in list_users():
        print(f"{name}\t{','.join(roles) or '(no role)'}\t{'active' if active else 'inactive'}")
    return 0
