"""Real servers for provider tests: a throwaway Dovecot (IMAP) and an aiosmtpd SMTP sink.

Why real servers: IMAP semantics (UIDVALIDITY, CONDSTORE, IDLE, error texts) are where mail clients
break, and a mock would only confirm our own assumptions. Everything lives in a temp dir and listens
on a free loopback port, so tests run in parallel and need no root-only paths at run time.

- ``DovecotServer`` writes a minimal config (plain IMAP on 127.0.0.1, passwd-file users, Maildir)
  and runs ``dovecot -F`` as a child we own. As a normal user every Dovecot process runs as that
  user; as root (containers) Dovecot refuses root for login/mail processes, so it uses the
  package's ``dovenull``/``dovecot`` accounts and ``nobody`` for mail, and the dirs are chowned.
- ``SmtpSink`` is an aiosmtpd server whose handler hands each message to ``dovecot-lda`` with the
  same config, so what a provider sends over SMTP can be read back over IMAP.

Project rule: tests that need a server skip when it is missing, but fail under
``REPLYDESK_REQUIRE_SERVERS=1`` (CI), see ``require_server``.
"""

from __future__ import annotations

import contextlib
import email.utils
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DOVECOT_HOW = "apt-get install dovecot-imapd"
LDA_CANDIDATES = ("/usr/lib/dovecot/dovecot-lda", "/usr/libexec/dovecot/dovecot-lda")


#: The shop's and a customer's addresses in the mail tests, and the marks those tests carry.
SHOP = "hello@shop.example"
ALICE = "alice@customer.example"


def mail_test_marks(timeout: int) -> list[pytest.MarkDecorator]:
    return [
        pytest.mark.server,
        pytest.mark.timeout(timeout),
        pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
    ]


def require_server(name: str, available: bool, how: str) -> None:
    """Skip (or fail under ``REPLYDESK_REQUIRE_SERVERS=1``) when a test server is missing."""
    if available:
        return
    reason = f"{name} not installed: {how}"
    if os.environ.get("REPLYDESK_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (REPLYDESK_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )


def lda_binary() -> str | None:
    return next((p for p in LDA_CANDIDATES if os.access(p, os.X_OK)), None)


def dovecot_available() -> bool:
    return dovecot_binary() is not None and lda_binary() is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_greeting(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not answer on port {port}: {last}")


def _group_alive(pgid: int) -> bool:
    """Is any process of group ``pgid`` still running? Zombies don't count: in containers PID 1
    often never reaps them, and ``killpg(pgid, 0)`` would call them alive forever."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to the signal probe
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class DovecotServer:
    """One throwaway Dovecot instance. ``start()``/``stop()`` may be called repeatedly (same port)."""

    root: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    #: Extra passwd-file fields per user (Dovecot expands %variables in them; ``%w`` is the password).
    extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    #: (certificate chain, private key) PEM files: TLS on (STARTTLS on ``port``, implicit on ``tls_port``).
    tls: tuple[Path, Path] | None = None
    tls_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            # Dovecot will not run login or mail processes as root.
            self.login_user, self.internal_user = "dovenull", "dovecot"
            self.mail_uid, self.mail_gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
            for sub in ("mail", "home"):
                os.chown(self.root / sub, self.mail_uid, self.mail_gid)
            os.chmod(self.root, 0o755)
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            self.login_user = self.internal_user = me
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
        self.config = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self._write_config()
        self._write_passwd()

    # -- config -------------------------------------------------------------------------------
    def _write_config(self) -> None:
        r = self.root
        internal_group = grp.getgrgid(pwd.getpwnam(self.internal_user).pw_gid).gr_name
        self.config.write_text(
            f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log}
info_log_path = {self.log}
instance_name = replydesk-test-{self.port}
protocols = imap
listen = 127.0.0.1
{self._ssl_settings()}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = {self.login_user}
default_internal_user = {self.internal_user}
default_internal_group = {internal_group}
first_valid_uid = {min(self.mail_uid, 500)}
first_valid_gid = 0
mail_location = maildir:{r}/mail/%n
postmaster_address = postmaster@localhost
lda_mailbox_autocreate = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {r}/passwd
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={r}/home/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port if self.tls else 0}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
"""
        )

    def _ssl_settings(self) -> str:
        if self.tls is None:
            return "ssl = no"
        cert, key = self.tls
        return f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\nssl_min_protocol = TLSv1.2"

    def _write_passwd(self) -> None:
        lines = [f"{u}:{{PLAIN}}{p}::::::{self.extra.get(u, '')}" for u, p in self.users.items()]
        path = self.root / "passwd"
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, 0o644)

    def add_user(self, user: str, password: str, extra: str = "") -> None:
        """Add a mail user; passwd-file is re-read on change, so this works while running."""
        self.users[user] = password
        if extra:
            self.extra[user] = extra
        self._write_passwd()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        binary = dovecot_binary()
        assert binary, "dovecot missing"
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so stop() can take every child down
        )
        try:
            _wait_for_greeting(self.port)
        except RuntimeError as exc:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{exc}\n{log}") from None

    def stop(self) -> None:
        """Take the server down like a crash or reboot would: master *and* live IMAP sessions.

        The master alone leaves running imap processes serving their clients, so the whole
        process group gets the signal; then wait until every process and the port are gone.
        """
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not _group_alive(proc.pid):
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    # -- helpers for tests --------------------------------------------------------------------
    def deliver(self, user: str, raw: bytes, folder: str = "INBOX", sender: str = "") -> None:
        """Deliver like an MTA would (dovecot-lda), into ``folder`` of ``user``."""
        lda = lda_binary()
        assert lda, "dovecot-lda missing"
        cmd = [lda, "-c", str(self.config), "-d", user, "-m", folder]
        if sender:
            cmd += ["-f", sender]
        res = subprocess.run(cmd, input=raw, capture_output=True, timeout=20)
        if res.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"dovecot-lda failed ({res.returncode}): {res.stderr.decode(errors='replace')}\n{log}")

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib IMAP connection for setting up and inspecting mailboxes."""
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            conn.login(user, self.users[user])
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: str = "",
               internaldate: float | None = None) -> None:
        with self.imap(user) as conn:
            date = imaplib.Time2Internaldate(internaldate) if internaldate is not None else None
            typ, data = conn.append(folder, flags or None, date, raw)
            assert typ == "OK", data

    def recreate_folder(self, user: str, folder: str) -> None:
        """Delete and create a folder: the server assigns a new UIDVALIDITY."""
        with self.imap(user) as conn:
            conn.delete(folder)
            typ, data = conn.create(folder)
            assert typ == "OK", data

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.imap(user) as conn:
            typ, data = conn.status(folder, "(UIDVALIDITY)")
            assert typ == "OK", data
            return int(data[0].split(b"UIDVALIDITY")[1].strip(b" )"))

    def fetch_raw(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message in ``folder`` as raw bytes, in UID order."""
        with self.imap(user) as conn:
            conn.select(folder, readonly=True)
            typ, data = conn.uid("SEARCH", "ALL")
            out: list[bytes] = []
            for uid in data[0].split():
                typ, msg = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                out.append(next(part[1] for part in msg if isinstance(part, tuple)))
            return out


@contextlib.contextmanager
def running_dovecot(users: dict[str, str] | None = None, *,
                    tls: tuple[Path, Path] | None = None) -> Iterator[DovecotServer]:
    require_server("dovecot", dovecot_available(), DOVECOT_HOW)
    # Not pytest's tmp_path: that lives under a 0700 dir Dovecot's unprivileged users cannot enter.
    root = Path(tempfile.mkdtemp(prefix="replydesk-dovecot-"))
    os.chmod(root, 0o755)
    server = DovecotServer(root / "srv", tls=tls)
    for user, password in (users or {}).items():
        server.add_user(user, password)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class _DeliverToDovecot:
    """aiosmtpd handler: accept mail for known users and deliver it with dovecot-lda."""

    def __init__(self, server: DovecotServer) -> None:
        self.server = server
        self.received: list[tuple[str, list[str], bytes]] = []

    def _user_for(self, address: str) -> str | None:
        local = address.split("@", 1)[0].lower()
        return local if local in self.server.users else None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if self._user_for(address) is None:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        raw = envelope.original_content or envelope.content
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), raw))
        for rcpt in envelope.rcpt_tos:
            user = self._user_for(rcpt)
            assert user is not None
            try:
                self.server.deliver(user, raw, sender=envelope.mail_from)
            except Exception as exc:  # keep the SMTP session sane; the test will see the 451
                return f"451 4.3.0 delivery failed: {exc}"
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    host: str
    port: int
    handler: _DeliverToDovecot


@contextlib.contextmanager
def running_smtp(dovecot: DovecotServer, *, implicit_tls: ssl.SSLContext | None = None,
                 starttls: ssl.SSLContext | None = None) -> Iterator[SmtpSink]:
    """An SMTP server on loopback that requires AUTH (checked against the Dovecot users); with
    ``implicit_tls`` it speaks TLS from the first byte, with ``starttls`` it requires STARTTLS."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        ok = (
            isinstance(auth_data, LoginPassword)
            and dovecot.users.get(auth_data.login.decode().split("@", 1)[0]) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535

    handler = _DeliverToDovecot(dovecot)
    port = free_port()
    with warnings.catch_warnings():  # plain-text AUTH on loopback is the point here
        warnings.simplefilter("ignore", UserWarning)
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            authenticator=authenticator,
            auth_require_tls=False,
            auth_required=True,
            ssl_context=implicit_tls,
            tls_context=starttls,
            require_starttls=starttls is not None,
        )
        controller.start()
    try:
        yield SmtpSink("127.0.0.1", port, handler)
    finally:
        controller.stop()


def make_mail(
    *,
    subject: str = "Hello",
    sender: str = "Alice Example <alice@customer.example>",
    to: str = "hello@shop.example",
    body: str = "Hi there",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    date: float | None = None,
) -> bytes:
    """A small well-formed UTF-8 mail for tests that are not about parsing."""
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(date if date is not None else time.time())
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="customer.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(body)
    return msg.as_bytes()
