"""A throwaway PostgreSQL server for the team tests and the bench: Debian's binaries, a temp dir.

Why real: team mode's guarantees (the event log's order, advisory-lock leadership that dies with its
session, ``FOR UPDATE SKIP LOCKED`` claims, LISTEN/NOTIFY, roles and grants, TLS) are PostgreSQL's
behaviour, which a mock would only restate. The cluster listens on a free loopback port with TLS on
(a trustme CA), password (SCRAM) authentication for every connection, and ``fsync`` off unless
asked (a test kills our processes, never the database's). ``initdb`` refuses to run as root, so
as root (containers, CI) every server command runs as the ``postgres`` user through ``runuser``.

Project rule: without the binaries a team test skips with the reason, and fails under
``REPLYDESK_REQUIRE_SERVERS=1`` (CI), see ``servers.require_server``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port, require_server

PG_HOW = "apt-get install postgresql (the tests look in /usr/lib/postgresql/*/bin)"
ADMIN = "rdadmin"


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def pg_available() -> bool:
    bindir = pg_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        return False
    if os.geteuid() == 0:  # initdb refuses root: we need the postgres account and runuser
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return shutil.which("runuser") is not None
    return True


@dataclass
class PgServer:
    """One cluster. ``url(db, user)`` builds connection URLs; ``admin_password`` is the superuser's."""

    root: Path
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    fsync: bool = False
    tls: bool = True
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        self.bindir = pg_bindir()
        assert self.bindir is not None
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def _own(self, path: Path) -> None:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.sock.mkdir(exist_ok=True)
        self._own(self.root)
        self._own(self.sock)
        pwfile = self.root / "pw"
        pwfile.write_text(self.admin_password + "\n")
        os.chmod(pwfile, 0o600)
        self._own(pwfile)
        try:
            self._run("initdb", "-D", str(self.data), "-U", ADMIN, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                      "-E", "UTF8", "--locale=C", "-N")
        finally:
            pwfile.unlink()
        conf = ["listen_addresses = '127.0.0.1'", f"port = {self.port}",
                f"unix_socket_directories = '{self.sock}'", "max_connections = 200",
                f"fsync = {'on' if self.fsync else 'off'}", "shared_buffers = 64MB"]
        hba = ["local all all scram-sha-256", "host all all 127.0.0.1/32 scram-sha-256"]
        if self.tls:
            conf += self._tls_files()
            hba = ["local all all scram-sha-256", "hostssl all all 127.0.0.1/32 scram-sha-256",
                   "hostnossl all all 127.0.0.1/32 scram-sha-256"]
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.write("\n".join(conf) + "\n")
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n")

    def _tls_files(self) -> list[str]:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        crt, key = self.data / "server.crt", self.data / "server.key"
        cert.cert_chain_pems[0].write_to_path(str(crt))
        cert.private_key_pem.write_to_path(str(key))
        self.ca_file = self.root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        for path in (crt, key):
            os.chmod(path, 0o600)
            self._own(path)
        return ["ssl = on", f"ssl_cert_file = '{crt}'", f"ssl_key_file = '{key}'"]

    def start(self) -> None:
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start",
                         check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"postgres did not start: {done.stdout}{done.stderr}\n{log[-3000:]}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def url(self, db: str = "postgres", user: str = ADMIN, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}" + (f"?{query}" if query else "")

    def admin(self, db: str = "postgres"):  # noqa: ANN201 - a psycopg connection
        import psycopg

        return psycopg.connect(self.url(db), password=self.admin_password, autocommit=True)

    def create_database(self, prefix: str = "team") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@contextlib.contextmanager
def running_postgres(*, fsync: bool = False, tls: bool = True) -> Iterator[PgServer]:
    require_server("postgresql", pg_available(), PG_HOW)
    root = Path(tempfile.mkdtemp(prefix="replydesk-pg-"))
    os.chmod(root, 0o755)  # the postgres user must be able to enter it
    server = PgServer(root / "srv", fsync=fsync, tls=tls)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        deadline = time.monotonic() + 10
        while (server.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)
