"""A throw-away PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary
folder, a free loopback port, trust authentication on loopback only.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to the
`postgres` system user (created by Debian's package) and every server command runs as it.

- `postgres_server()` is a context manager yielding a `postgres://` URL (used by fixtures);
- `python tests/postgres_server.py PYTEST-ARGS...` runs pytest with the web suite pointed at
  such a server (`EUTIRADS_TEST_DATABASE_URL`, read by tests/web/conftest.py); this is the
  PostgreSQL pass of scripts/test.sh.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


def bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries Debian installed (or `initdb` on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def postgres_server(database: str = "eutirads") -> Iterator[str]:
    """Start a cluster, create `database`, yield its URL, stop and delete the cluster."""
    binaries = bin_dir()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL server binaries not found (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="eutirads-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run(_as_server_user([str(c) for c in cmd]), check=True,  # noqa: E731
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run(binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync")
        # fsync off: a test cluster need not survive a power cut, and it is much faster.
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        run(binaries / "pg_ctl", "-D", data, "-o", options, "-l", root / "server.log", "-w",
            "start")
        try:
            run(binaries / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", database)
            yield f"postgres://postgres@127.0.0.1:{port}/{database}"
        finally:
            run(binaries / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(pytest_args: Sequence[str]) -> int:
    if bin_dir() is None:
        print("PostgreSQL pass skipped: no PostgreSQL server binaries (install Debian's "
              "postgresql package)", file=sys.stderr)
        return 0
    with postgres_server() as url:
        env = {**os.environ, "EUTIRADS_TEST_DATABASE_URL": url}
        print(f"PostgreSQL pass: web tests against {url}", flush=True)
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
