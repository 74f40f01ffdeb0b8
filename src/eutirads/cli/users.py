"""`eutirads users add NAME --role ROLE`: create or update an account without a browser;
`users token NAME [--expires DAYS]`, `users tokens [NAME]`, `users revoke TOKEN_ID|--all NAME`:
the diagnosis API's tokens.

The password is read from stdin when it is not a terminal (one line), or prompted twice
with getpass; never from the command line, where it would land in the shell history and
the process list. Re-adding an existing user revokes its API tokens (a reset account starts
without old credentials).
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
    token = sub.add_parser("token", help="print a new API token for a user (shown once)",
                           description="Create a new API token for NAME and print it once, as "
                                       "the last word of the output; only its hash is stored. "
                                       "Send it as 'Authorization: Token <token>'.")
    token.add_argument("name", help="user name")
    token.add_argument("--expires", type=int, metavar="DAYS",
                       help="the token stops working after DAYS days (default: never)")
    token.set_defaults(func=_token)
    tokens = sub.add_parser("tokens", help="list API tokens (never their secrets)")
    tokens.add_argument("name", nargs="?", help="only this user's tokens")
    tokens.set_defaults(func=_tokens)
    revoke = sub.add_parser("revoke", help="revoke an API token, or all of a user's",
                            description="Revoke the token with id TOKEN_ID (see 'users "
                                        "tokens'), or with --all NAME every token of NAME.")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("token_id", nargs="?", type=int, help="the token's id")
    target.add_argument("--all", metavar="NAME", dest="all_of", help="every token of NAME")
    revoke.set_defaults(func=_revoke)


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
    if not created:
        revoked = _revoke_all(args.name, reason="user re-added")
        if revoked:
            print(f"revoked {revoked} API token(s) of {args.name}")
    return 0


def _user(name: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise InputError(f"no user named {name!r} (create one with 'eutirads users add')")
    return user


def _revoke_all(name: str, *, reason: str = "") -> int:
    from ..web.diagnosis.tokens import revoke_all

    return revoke_all(_user(name), reason=reason)


def _token(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.core.access import ROLES, has_role
    from ..web.diagnosis.tokens import create_token

    user = _user(args.name)
    if not user.is_active:
        raise InputError(f"user {args.name!r} is inactive")
    if not has_role(user, *ROLES):
        raise InputError(f"user {args.name!r} has no role; the API would refuse the token")
    token = create_token(user, expires_days=args.expires)
    if args.expires:
        print(f"expires in {args.expires} days")
    print(token)  # the last word of the output: scripts take it from there
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.diagnosis.tokens import list_tokens

    if args.name:
        _user(args.name)
    print("id\tuser\tprefix\tstatus\tcreated\texpires\tlast used")
    for row in list_tokens(args.name):
        when = (lambda t: f"{t:%Y-%m-%d %H:%M}" if t else "-")
        print(f"{row.pk}\t{row.user.get_username()}\t{row.prefix}…\t{row.status()}\t"
              f"{when(row.created_at)}\t{when(row.expires_at) if row.expires_at else 'never'}\t"
              f"{when(row.last_used_at)}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.diagnosis.tokens import revoke_token

    if args.all_of:
        count = _revoke_all(args.all_of)
        print(f"revoked {count} API token(s) of {args.all_of}")
        return 0
    row = revoke_token(args.token_id)
    print(f"revoked token #{row.pk} ({row.prefix}…) of {row.user.get_username()}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..web import setup

    setup(migrate=True)
    from ..web.core.accounts import list_users

    for name, roles, active in list_users():
        print(f"{name}\t{','.join(roles) or '(no role)'}\t{'active' if active else 'inactive'}")
    return 0
