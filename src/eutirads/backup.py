"""`eutirads backup` / `restore`: the web app's database and the EUTIRADS_HOME folder in one
archive, and back.

The archive (`.tar.gz`, written owner-only) holds:
- `backup.json`: format version, date, database engine;
- `database.sqlite3` (a consistent snapshot through SQLite's backup API) or
  `database.pgdump` (`pg_dump --format=custom` of the DATABASE_URL database);
- `home/`: the EUTIRADS_HOME folder (bundles, kept diagnosis images, secret key...) without
  the SQLite files themselves, the listen spool (identified, transient) and, unless asked,
  the de-identification key: that key is the one secret that links pseudonyms to patients,
  so it is kept apart (see deploy/RUNBOOK.md, "Key custody").

Restore refuses to overwrite a database or home that already holds data unless `force`.
The database URL comes from DATABASE_URL, as for the web app; a password in it is handed
to pg_dump/pg_restore through the environment, never on a command line or in a message.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, InputError

__all__ = ["backup", "restore", "Database", "database_from_env"]

FORMAT_VERSION = 1
SQLITE_NAME = "eutirads.sqlite3"
_NEVER_IN_HOME = {SQLITE_NAME, f"{SQLITE_NAME}-wal", f"{SQLITE_NAME}-shm", f"{SQLITE_NAME}-journal",
                  "listen-spool"}
KEY_NAME = "deid.key"


def home() -> Path:
    return Path(os.environ.get("EUTIRADS_HOME") or Path.home() / ".eutirads").expanduser()


@dataclass(frozen=True)
class Database:
    engine: str                  # "sqlite" or "postgresql"
    path: Path | None = None     # SQLite
    url: str | None = None       # PostgreSQL

    def pg_env(self) -> tuple[list[str], dict[str, str]]:
        """Connection arguments for pg_dump/pg_restore, the password in the environment."""
        import dj_database_url

        cfg = dj_database_url.parse(self.url)
        args = ["--dbname", cfg["NAME"]]
        for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
            if cfg.get(key):
                args += [flag, str(cfg[key])]
        env = dict(os.environ)
        if cfg.get("PASSWORD"):
            env["PGPASSWORD"] = str(cfg["PASSWORD"])
        return args, env


def database_from_env() -> Database:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return Database("sqlite", path=home() / SQLITE_NAME)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgres", "postgresql", "pgsql", "postgis"):
        return Database("postgresql", url=url)
    if scheme == "sqlite":
        import dj_database_url

        return Database("sqlite", path=Path(dj_database_url.parse(url)["NAME"]))
    raise ConfigError(f"backup: DATABASE_URL scheme {scheme!r} is not supported "
                      "(SQLite or PostgreSQL); back that database up with its own tools")


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return candidates[-1]
    raise ConfigError(f"{name} not found: install the PostgreSQL client tools (Debian "
                      "package postgresql-client)")


def _run_pg(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        # pg_dump's messages name tables and the server, never patient data; one line.
        last = (done.stderr.strip().splitlines() or ["failed"])[-1][:200]
        raise InputError(f"{what}: {last}")


def _add_home(archive: tarfile.TarFile, root: Path, with_key: bool) -> int:
    count = 0
    if not root.is_dir():
        return count
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in _NEVER_IN_HOME or (relative.name == KEY_NAME and not with_key):
            continue
        if path.is_file() and not path.is_symlink():
            archive.add(path, arcname=str(Path("home") / relative), recursive=False)
            count += 1
    return count


def backup(out: str | os.PathLike[str], *, with_key: bool = False,
           database: Database | None = None) -> dict:
    """Write the archive `out`; returns what it holds (counts, engine)."""
    out = Path(out)
    if out.exists():
        raise InputError(f"{out}: exists; give a new archive name")
    database = database or database_from_env()
    root = home()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eutirads-backup-") as work:
        work = Path(work)
        if database.engine == "sqlite":
            if not database.path or not database.path.is_file():
                raise InputError(f"{database.path}: no SQLite database to back up")
            dump = work / "database.sqlite3"
            with sqlite3.connect(database.path) as source, sqlite3.connect(dump) as target:
                source.backup(target)  # consistent even while the app writes
            source.close()
            target.close()
        else:
            dump = work / "database.pgdump"
            args, env = database.pg_env()
            _run_pg([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(dump),
                     *args], env, "pg_dump")
        info = {"format_version": FORMAT_VERSION, "engine": database.engine,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "with_key": with_key}
        (work / "backup.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
            archive.add(work / "backup.json", arcname="backup.json")
            archive.add(dump, arcname=dump.name)
            info["home_files"] = _add_home(archive, root, with_key)
    return info


def _has_data(database: Database) -> bool:
    if database.engine == "sqlite":
        return bool(database.path and database.path.is_file() and database.path.stat().st_size)
    import psycopg

    try:
        with psycopg.connect(_psycopg_url(database.url)) as conn:
            row = conn.execute("SELECT count(*) FROM information_schema.tables "
                               "WHERE table_schema = 'public'").fetchone()
    except psycopg.Error as exc:
        raise InputError(f"cannot reach the database ({type(exc).__name__})") from None
    return bool(row and row[0])


def _home_has_data(root: Path) -> bool:
    return root.is_dir() and any(
        p.is_file() and p.relative_to(root).parts[0] not in _NEVER_IN_HOME and p.name != KEY_NAME
        for p in root.rglob("*"))


def _psycopg_url(url: str) -> str:
    return "postgresql" + url[url.index(":"):] if url.startswith("postgres:") else url


def restore(archive_path: str | os.PathLike[str], *, force: bool = False,
            database: Database | None = None) -> dict:
    """Put the database and home files of the archive back; returns its backup.json."""
    archive_path = Path(archive_path)
    database = database or database_from_env()
    root = home()
    try:
        archive = tarfile.open(archive_path, mode="r:gz")
    except (OSError, tarfile.TarError):
        raise InputError(f"{archive_path}: not a readable eutirads backup") from None
    with archive, tempfile.TemporaryDirectory(prefix="eutirads-restore-") as work:
        work = Path(work)
        archive.extractall(work, filter="data")  # no absolute paths, links or devices
        try:
            info = json.loads((work / "backup.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(f"{archive_path}: not an eutirads backup (no backup.json)") from None
        if info.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{archive_path}: backup format {info.get('format_version')} is "
                             f"not {FORMAT_VERSION}")
        if info.get("engine") != database.engine:
            raise InputError(f"{archive_path}: a {info.get('engine')} backup cannot be restored "
                             f"into a {database.engine} database")
        if not force and (_has_data(database) or _home_has_data(root)):
            raise InputError("the database or EUTIRADS_HOME already holds data; restore into an "
                             "empty one, or pass --force to replace it")
        if database.engine == "sqlite":
            database.path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(f"{database.path}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(work / "database.sqlite3", database.path)
            os.chmod(database.path, 0o600)
        else:
            args, env = database.pg_env()
            _run_pg([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner",
                     "--exit-on-error", *args, str(work / "database.pgdump")], env, "pg_restore")
        if (work / "home").is_dir():
            root.mkdir(parents=True, exist_ok=True)
            shutil.copytree(work / "home", root, dirs_exist_ok=True)
    return info
