"""`eutirads backup`/`restore`: the database (SQLite snapshot, or PostgreSQL through
pg_dump/pg_restore on a throw-away server) and EUTIRADS_HOME round-trip; the key and the
listen spool stay out; existing data is not replaced without --force."""

from __future__ import annotations

import sqlite3
import stat
import tarfile

import pytest

from eutirads.cli import main
from tests.postgres_server import bin_dir, postgres_server


def _home(root):
    (root / "bundles" / "b1").mkdir(parents=True)
    (root / "bundles" / "b1" / "bundle.json").write_text('{"format_version": 2}')
    (root / "secret_key").write_text("s3cret")
    (root / "deid.key").write_text("k" * 64)
    (root / "deid.key").chmod(0o600)
    (root / "listen-spool" / "ready").mkdir(parents=True)
    (root / "listen-spool" / "ready" / "x.dcm").write_bytes(b"identified")
    return root


def test_a_sqlite_backup_restores_the_database_and_home_without_the_key(tmp_path, monkeypatch,
                                                                        capsys):
    home = _home(tmp_path / "home")
    monkeypatch.setenv("EUTIRADS_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with sqlite3.connect(home / "eutirads.sqlite3") as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES ('label 4')")
    archive = tmp_path / "backup.tar.gz"
    assert main(["backup", str(archive)]) == 0
    assert "the de-identification key is not included" in capsys.readouterr().out
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"backup.json", "database.sqlite3", "home/secret_key",
            "home/bundles/b1/bundle.json"} <= names
    assert not any("deid.key" in n or "listen-spool" in n or n.endswith("eutirads.sqlite3")
                   for n in names)

    assert main(["restore", str(archive)]) == 2  # the data is still there
    assert "--force" in capsys.readouterr().err
    import shutil

    shutil.rmtree(home)
    assert main(["restore", str(archive)]) == 0
    with sqlite3.connect(home / "eutirads.sqlite3") as db:
        assert db.execute("SELECT v FROM t").fetchall() == [("label 4",)]
    assert (home / "bundles" / "b1" / "bundle.json").is_file()
    assert not (home / "deid.key").exists()
    assert main(["restore", str(archive), "--force"]) == 0


def test_a_postgresql_backup_goes_through_pg_dump_and_pg_restore(tmp_path, monkeypatch):
    if bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql)")
    import psycopg

    from eutirads.backup import backup, restore

    monkeypatch.setenv("EUTIRADS_HOME", str(tmp_path / "home"))
    with postgres_server("backup") as url:
        monkeypatch.setenv("DATABASE_URL", url)
        dsn = url.replace("postgres://", "postgresql://", 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE readings (label text)")
            conn.execute("INSERT INTO readings VALUES ('5')")
        info = backup(tmp_path / "pg.tar.gz", with_key=True)
        assert info["engine"] == "postgresql"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE readings")
        restore(tmp_path / "pg.tar.gz")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT label FROM readings").fetchall() == [("5",)]
