"""`eutirads backup` and `eutirads restore`: the web app's database and EUTIRADS_HOME."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backup", help="archive the database and EUTIRADS_HOME (one .tar.gz, owner-only)",
        description="Write the web app's database (SQLite snapshot, or pg_dump of "
                    "DATABASE_URL) and the EUTIRADS_HOME folder into one archive. The "
                    "de-identification key is left out unless --with-key: keep it apart.")
    parser.add_argument("archive", metavar="ARCHIVE.tar.gz", help="new archive to write")
    parser.add_argument("--with-key", action="store_true",
                        help="also archive EUTIRADS_HOME/deid.key (then guard the archive "
                             "like the key itself)")
    parser.set_defaults(func=_backup)

    parser = subparsers.add_parser(
        "restore", help="put a backup's database and EUTIRADS_HOME back",
        description="Restore an archive written by `eutirads backup` into the database of "
                    "DATABASE_URL (or SQLite in EUTIRADS_HOME) and into EUTIRADS_HOME. Refuses "
                    "to replace existing data unless --force. Run `python -m "
                    "eutirads.web.manage migrate` afterwards when restoring into a newer "
                    "eutirads.")
    parser.add_argument("archive", metavar="ARCHIVE.tar.gz")
    parser.add_argument("--force", action="store_true", help="replace existing data")
    parser.set_defaults(func=_restore)


def _backup(args: argparse.Namespace) -> int:
    from ..backup import backup

    info = backup(args.archive, with_key=args.with_key)
    print(f"backup: {args.archive}: {info['engine']} database and {info['home_files']} files "
          f"of EUTIRADS_HOME" + ("" if info["with_key"] else
                                 " (the de-identification key is not included)"))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from ..backup import restore

    info = restore(args.archive, force=args.force)
    print(f"restore: {info['engine']} database and EUTIRADS_HOME from the backup of "
          f"{info['created']}")
    return 0
