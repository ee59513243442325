"""The demo platform: a small shop's customers on nine channels, simulated, with a real remote side.

It is a provider like any other (same engine, same outbox). The "remote side" lives in the
workspace: ``demo-remote.json`` fixes when the shop opened (so ages and SLA states are stable),
and ``demo-ledger.jsonl`` records every reply the platform accepted, as a real platform would.
It honours idempotency keys like Mastodon does: a repeated key returns the first result and posts
nothing, so against it no reply ever needs to end ``unknown``; tests use the ledger as the referee.

Like the real platforms it simulates, it enforces their reply windows (a WhatsApp reply more than
24 hours after the customer's last message is refused, as Meta refuses it), performs the outbox's
other actions (``mark_read``, ``edit_reply``, ``delete_reply``, recorded in ``demo-actions.jsonl``
exactly once per key), and in push mode (``push: true``) its WhatsApp customers arrive only as
signed webhook bodies (``webhook_bodies``), as WhatsApp's do, for the pushed-payload path.

Everything the customers write is a pure function of (seed, time): the backlog, the steady stream
at ``pace`` seconds, and follow-ups to our replies (derived from the ledger). The cursor is a time
watermark, so a re-fetch returns exactly what appeared since.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import json
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from replydesk import windows
from replydesk.model import (
    ActionResult,
    Contact,
    FetchResult,
    IncomingMessage,
    OutgoingAction,
    OutgoingReply,
    SendResult,
)
from replydesk.options import AccountOptions, Duration, Strict
from replydesk.platforms import PlatformFacts
from replydesk.providers.base import (
    Capabilities,
    Offline,
    PermanentError,
    Provider,
    PushRejected,
    RateLimited,
    SecretGetter,
    TransientError,
)

LEDGER = "demo-ledger.jsonl"
REMOTE_STATE = "demo-remote.json"
REPEATS = "demo-repeats.jsonl"  # keys sent again and deduplicated by the platform
ACTIONS_LEDGER = "demo-actions.jsonl"  # marks read, edits and deletes the platform performed
ACTION_REPEATS = "demo-action-repeats.jsonl"
#: Platforms whose customers reach us only by webhook in push mode (WhatsApp has no polling API).
PUSHED_PLATFORMS = ("whatsapp",)
#: The demo's "app secret" for signing webhook bodies when the account has no secret of its own:
#: the demo talks to no real platform, so there is nothing to protect (``replydesk login demo``
#: sets a real one, which then signs and verifies instead).
DEMO_APP_SECRET = "demo-app-secret"
SIGNATURE_HEADER = "x-hub-signature-256"
PUSH_BATCH = 20  # messages per webhook body

CHANNELS: list[tuple[str, str]] = [
    ("email", "email"), ("x", "mention"), ("x", "dm"), ("facebook", "comment"), ("facebook", "dm"),
    ("instagram", "comment"), ("instagram", "dm"), ("google", "review"), ("whatsapp", "dm"),
    ("telegram", "dm"), ("mastodon", "mention"), ("bluesky", "mention"),
]



class DemoFaults(Strict):
    """Fault injection on the demo platform's remote side."""

    fail: float = Field(0.0, ge=0, le=1)
    """Share of requests answered with HTTP 503."""
    latency: Duration = 0.0
    """Seconds added to every request."""
    ratelimit: float = Field(0.0, ge=0, le=1)
    """Share of requests answered 429 + Retry-After."""
    offline: bool = False
    """The platform is unreachable."""
    lost_ack: float = Field(0.0, ge=0, le=1)
    """Share of accepted replies whose answer is lost."""
    retry_after: Duration = 2.0
    """How long a simulated 429 asks to wait (Retry-After)."""
    crash_after_accept: float = Field(0.0, ge=0, le=1)
    """Share of accepted replies after which the process is SIGKILLed before it hears the answer
    (crash tests: the worst moment for exactly-once)."""


class FaultyWire:
    """The simulated network between us and a demo platform's remote side: latency, outages, 5xx
    and 429 on the way there (``request``); a crash or a lost answer once the platform has done
    what we asked (``landed``). Faults are chance, not part of the seeded story."""

    def __init__(self, faults: DemoFaults, clock: Callable[[], float]) -> None:
        self.faults = faults
        self.clock = clock
        self._rng = random.Random()

    async def request(self) -> None:
        f = self.faults
        if f.latency:
            await asyncio.sleep(f.latency)
        if f.offline:
            raise Offline("demo platform unreachable (offline)")
        roll = self._rng.random()
        if roll < f.ratelimit:
            raise RateLimited(f"HTTP 429 Too Many Requests (Retry-After: {f.retry_after:g})",
                              reset_at=self.clock() + f.retry_after)
        if roll < f.ratelimit + f.fail:
            raise TransientError("HTTP 503 Service Unavailable")

    def landed(self) -> None:
        if self.faults.crash_after_accept and self._rng.random() < self.faults.crash_after_accept:
            os.kill(os.getpid(), signal.SIGKILL)  # done and durable, but we never hear the answer
        if self._rng.random() < self.faults.lost_ack:
            raise TransientError("connection reset after the request was sent")


class DemoOptions(AccountOptions):
    """The built-in demo platform: a simulated shop, no account needed."""

    secret_hint: ClassVar[str] = "any text (the demo platform ignores it)"

    provider: Literal["demo"] = "demo"
    seed: int = 42
    """Same seed, same customers and messages."""
    pace: Duration = 20.0
    """Average seconds between new customer messages."""
    backlog: int = Field(240, ge=0, le=100_000)
    """Conversations already waiting when the workspace is created."""
    faults: DemoFaults = DemoFaults()
    """Fault injection on the platform's side, for demos and tests."""
    push: bool = False
    """Push mode: the WhatsApp customers arrive only as signed webhook bodies, as WhatsApp's do
    (the pushed-payload path); a webhook receiver must hand them over, so without one they do not
    show (tests play that part)."""
    remote: str | None = None
    """Where the simulated platform keeps its side (clock anchor, ledger); default: the workspace.
    Team engines on one machine share one, as they would share a real platform."""


# (language, customer names, opening messages, follow-ups). Real scripts, so alignment and search
# are exercised the way our users' customers write.
LANGUAGES: list[tuple[str, list[str], list[str], list[str]]] = [
    ("en", ["Amy Clarke", "Tom Becker", "Priya Shah", "Jonas Weber", "Grace Okafor"], [
        "Hi, my order #{n} hasn't arrived yet. Can you check?",
        "Do you ship to Nairobi? Asking before I order.",
        "The blue mug I bought is chipped 😞 what can I do?",
        "Love the new autumn blend! ☕ Will you restock the 1kg bags?",
        "I was charged twice for order #{n}. Please refund one.",
        "Is the shop open on Sunday?",
        "Terrible service, still waiting for a reply about my refund!!",
        "Can I change the delivery address for #{n}?",
    ], ["Thanks, that helps!", "Still not here, any update?", "Perfect, thank you 🙏"]),
    ("sw", ["Amani Mwangi", "Neema Achieng", "Baraka Otieno"], [
        "Habari, agizo langu #{n} bado halijafika. Tafadhali angalia.",
        "Je, mnasafirisha hadi Mombasa?",
        "Nimelipishwa mara mbili kwa agizo #{n}.",
    ], ["Asante sana!", "Bado sijapokea, msaada tafadhali."]),
    ("hi", ["अनन्या शर्मा", "राहुल वर्मा", "प्रिया सिंह"], [
        "नमस्ते, मेरा ऑर्डर #{n} अभी तक नहीं आया है।",
        "क्या आप दिल्ली में डिलीवरी करते हैं?",
        "मुझे रिफंड चाहिए, कप टूटा हुआ आया।",
    ], ["धन्यवाद!", "अभी भी इंतज़ार कर रहा हूँ।"]),
    ("ms", ["Nurul Aisyah", "Ahmad Faiz", "Siti Hajar"], [
        "Hai, pesanan saya #{n} belum sampai lagi.",
        "Adakah kedai buka pada hari Ahad?",
        "Boleh saya tukar alamat penghantaran?",
    ], ["Terima kasih!", "Masih belum terima, tolong semak."]),
    ("el", ["Μαρία Παπαδοπούλου", "Γιώργος Νικολάου", "Ελένη Γεωργίου"], [
        "Γεια σας, η παραγγελία μου #{n} δεν έχει φτάσει ακόμα.",
        "Κάνετε αποστολές στη Θεσσαλονίκη;",
        "Χρεώθηκα δύο φορές για την παραγγελία #{n}.",
    ], ["Ευχαριστώ πολύ!", "Ακόμα τίποτα, υπάρχει νέα;"]),
    ("kk", ["Айгүл Серікова", "Нұрлан Әбенов", "Дана Қасымова"], [
        "Сәлеметсіз бе, менің тапсырысым #{n} әлі келген жоқ.",
        "Алматыға жеткізесіздер ме?",
        "Маған ақшаны қайтару керек, кесе сынық келді.",
    ], ["Рақмет!", "Әлі келген жоқ, көмектесіңізші."]),
]

# A couple of customers type things that look like markup or carry escape codes: the console must
# show them literally (see the safety section of the README).
HOSTILE = [
    "[bold red]URGENT[/] refund me now",
    "Track it here \x1b]8;;https://evil.example\x1b\\shop.example/track\x1b]8;;\x1b\\ please",
]

REVIEW_TEXTS = [
    "★★★★★ Best coffee in town, friendly staff!",
    "★★☆☆☆ Order took two weeks to arrive.",
    "★☆☆☆☆ Broken mug and nobody answers my emails.",
    "★★★★☆ Καλή ποιότητα, λίγο ακριβό.",
]


@dataclass(frozen=True, slots=True)
class _Conv:
    native: str
    platform: str
    kind: str
    lang: int
    customer: str
    handle: str
    contact_id: str
    subject: str


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class DemoRemote:
    """The platform's side of the wire: its clock anchor and its ledger, in the data dir.

    The ledger is append-only JSON Lines, fsync'd before a post is acknowledged. A process killed
    mid-append can leave a torn last line; readers skip it and the next append starts a fresh line,
    as a real write-ahead log would. An in-memory index, topped up from the file's tail under the
    lock, keeps each accept O(1) however long the ledger grows.
    """

    def __init__(self, data_dir: Path, ledger: str = LEDGER, repeats: str = REPEATS) -> None:
        self.dir = Path(data_dir)
        self.ledger_path = self.dir / ledger
        self.repeats_path = self.dir / repeats
        self.state_path = self.dir / REMOTE_STATE
        self._entries: list[dict[str, Any]] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self._offset = 0  # bytes of the ledger already indexed (whole lines only)

    def started_at(self, now: float) -> float:
        try:
            return float(json.loads(self.state_path.read_text())["started_at"])
        except (OSError, ValueError, KeyError):
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.state_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private, whatever the umask
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps({"started_at": now}))
            os.replace(tmp, self.state_path)
            return now

    def _top_up(self, fd: int) -> bool:
        """Index lines appended since the last look; True when the file ends in a torn line."""
        size = os.fstat(fd).st_size
        if size < self._offset:  # the ledger was replaced (a test reset): start over
            self._entries, self._by_key, self._offset = [], {}, 0
        if size == self._offset:
            return False
        data = os.pread(fd, size - self._offset, self._offset)
        complete, newline, tail = data.rpartition(b"\n")
        if newline:
            for line in complete.split(b"\n"):
                entry = _parse_line(line)
                if entry is not None:  # every post as written: the ledger is the referee, never tidied
                    self._entries.append(entry)
                    self._by_key.setdefault(entry["key"], entry)
            self._offset += len(complete) + 1
        return bool(tail)

    def ledger(self) -> list[dict[str, Any]]:
        """Every accepted post, in the order the platform accepted them."""
        try:
            fd = os.open(self.ledger_path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._top_up(fd)
        finally:
            os.close(fd)
        return list(self._entries)

    def find(self, key: str) -> dict[str, Any] | None:
        self.ledger()
        return self._by_key.get(key)

    def accept(self, reply: OutgoingReply, now: float) -> dict[str, Any]:
        """Post a reply exactly once per idempotency key; durable (fsync) before we answer."""
        def entry(n: int) -> dict[str, Any]:
            posted = {"key": reply.key, "remote_id": f"post-{n}", "conversation": reply.conversation_native_id,
                      "text": reply.text, "at": now, "private": reply.private}
            if reply.send_as:
                posted["send_as"] = reply.send_as
            return posted

        return self.record(reply.key, entry, now)

    def record(self, key: str, make: Callable[[int], dict[str, Any]], now: float, *,
               dedupe: bool = True) -> dict[str, Any]:
        """Append ``make(n)`` (n: the entry's number, from 1) exactly once per ``key``; durable
        (fsync) before it returns. A repeated key returns the first entry and records nothing;
        ``dedupe=False`` is a platform that ignores keys: every call records a new entry."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.ledger_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            torn = self._top_up(fd)
            first = self._by_key.get(key) if dedupe else None
            if first is not None:  # a repeated key: the first result, nothing posted
                self._note_repeat(key, now)
                return first
            entry = make(len(self._entries) + 1)
            line = ("\n" if torn else "") + json.dumps(entry, ensure_ascii=False) + "\n"
            os.write(fd, line.encode("utf-8"))  # one write(2): a kill cannot interleave it
            os.fsync(fd)
            return entry
        finally:
            os.close(fd)

    def _note_repeat(self, key: str, now: float) -> None:
        """Count the duplicates idempotency prevented (tests and benchmarks report them)."""
        fd = os.open(self.repeats_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "at": now}) + "\n")

    def repeats(self) -> list[dict[str, Any]]:
        try:
            lines = self.repeats_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [e for e in map(_parse_line, (line.encode() for line in lines)) if e is not None]


#: The simulated platforms whose replies have windows (the facts say which kinds).
WINDOWED = ("whatsapp", "facebook", "instagram")


def _event(m: IncomingMessage) -> dict[str, Any]:
    """One message as the demo's webhook body carries it; the shop's own messages (answered from the
    platform's app) come as echoes, as WhatsApp's coexistence echoes do."""
    event = {"conversation": m.conversation_native_id, "platform": m.platform, "kind": m.kind,
             "sender": {"id": m.contact.native_id, "name": m.contact.name, "handle": m.contact.handle,
                        "vip": m.contact.vip},
             "message": {"mid": m.native_id, "text": m.text, "timestamp": m.created_at, "subject": m.subject}}
    if m.direction == "out":
        event["message"]["is_echo"] = True
    return event


def _from_event(event: Any) -> IncomingMessage:
    """A webhook event back to a message; every field is the platform's word, so checked."""
    sender, message = event["sender"], event["message"]
    fields = (event["conversation"], event["platform"], event["kind"], sender["id"], message["mid"])
    if not all(isinstance(f, str) and f for f in fields):
        raise ValueError("conversation, platform, kind, sender.id and message.mid must be strings")
    text, at = message["text"], message["timestamp"]
    if not isinstance(text, str) or isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError("message.text must be a string and message.timestamp a number")
    name = sender.get("name") if isinstance(sender.get("name"), str) else ""
    handle = sender.get("handle") if isinstance(sender.get("handle"), str) else ""
    subject = message.get("subject") if isinstance(message.get("subject"), str) else ""
    echo = message.get("is_echo") is True  # the shop's own message
    return IncomingMessage(
        native_id=message["mid"], conversation_native_id=event["conversation"], platform=event["platform"],
        kind=event["kind"], contact=Contact(sender["id"], name, handle, sender.get("vip") is True), text=text,
        created_at=float(at), direction="out" if echo else "in", author="Shop" if echo else name, subject=subject,
        meta={"at": float(at)} if event["platform"] in WINDOWED and not echo else {},
    )


def _parse_line(line: bytes) -> dict[str, Any] | None:
    """One ledger line, or None for a blank or torn one."""
    if not line.strip():
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "key" in entry else None


class DemoProvider(Provider):
    platform = "demo"
    Options = DemoOptions
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, supports_idempotency=True,
                                can_lookup_sent=True, accepts_push=True,
                                actions=frozenset({"mark_read", "edit_reply", "delete_reply"}))
    push_headers = ("content-type", SIGNATURE_HEADER)

    def __init__(self, account: str, options: DemoOptions | dict[str, Any], secret: SecretGetter, *,
                 data_dir: Path, clock=time.time) -> None:  # noqa: ANN001 - a zero-arg clock
        super().__init__(account, options, secret)
        opts: DemoOptions = self.options
        self.seed = opts.seed
        self.pace = max(opts.pace, 0.05)
        self.backlog = opts.backlog
        self.poll_interval = float(opts.poll_interval or min(5.0, self.pace))
        remote_dir = Path(opts.remote).expanduser() if opts.remote else data_dir
        self.remote = DemoRemote(remote_dir)
        self.actions = DemoRemote(remote_dir, ACTIONS_LEDGER, ACTION_REPEATS)
        self.push = opts.push
        self.clock = clock
        self.wire = FaultyWire(opts.faults, clock)

    def facts(self) -> dict[str, PlatformFacts]:
        """Every platform the shop is simulated on, with the facts of the real platform (its provider
        module's, or the registry's for platforms that have no module yet)."""
        from replydesk import providers

        platforms = dict.fromkeys(platform for platform, _ in CHANNELS)
        return {p: f for p in platforms if (f := providers.platform_facts(p)) is not None}

    # ---- the wire -------------------------------------------------------------------------------

    async def _request(self) -> None:
        """Every call crosses the simulated network: latency, outages, 5xx and 429 happen here."""
        await self.wire.request()

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        await self._request()
        cursor = cursors.get("default")
        now = self.clock()
        started = self.remote.started_at(now)
        since = float(cursor["t"]) if cursor and "t" in cursor else None
        messages: list[IncomingMessage] = []
        if since is None:
            messages.extend(self._backlog(started))
            since = started
        messages.extend(self._stream(started, since, now))
        messages.extend(self._followups(since, now))
        if self.push:  # those customers reach us by webhook only
            messages = [m for m in messages if m.platform not in PUSHED_PLATFORMS]
        return [FetchResult(messages=messages, cursor={"t": now})]

    def _window_refusal(self, reply: OutgoingReply) -> str | None:
        """What the real platform would answer a reply outside its window (Meta's error #10)."""
        conv = self._conv_by_native(reply.conversation_native_id)
        last_in = reply.answering_meta.get("at")
        if conv is None or not isinstance(last_in, int | float):
            return None
        facts = self.facts().get(conv.platform)
        rules = facts.window_rules(conv.kind) if facts else ()
        verdict = windows.check(windows.open_windows(rules, conv.kind, float(last_in)), self.clock(),
                                private=reply.private or conv.kind == "dm", send_as=reply.send_as,
                                platform=facts.label if facts else "")
        return verdict.reason if verdict is not None and not verdict.allowed else None

    def _landed(self) -> None:
        self.wire.landed()

    async def send(self, reply: OutgoingReply) -> SendResult:
        await self._request()
        refusal = self._window_refusal(reply)
        if refusal is not None:
            raise PermanentError(f"HTTP 400 (#10) This message is sent outside of allowed window: {refusal}")
        entry = self.remote.accept(reply, self.clock())
        self._landed()
        return SendResult(remote_id=entry["remote_id"], sent_at=entry["at"])

    # ---- actions other than replies -------------------------------------------------------------

    def _ours(self, remote_id: Any) -> bool:
        """A post the shop made on the platform: a reply in the ledger, or one from the backlog."""
        if not isinstance(remote_id, str):
            return False
        if remote_id.startswith("b") and remote_id.endswith("-r"):
            return True
        return any(e.get("remote_id") == remote_id for e in self.remote.ledger())

    async def perform(self, action: OutgoingAction) -> ActionResult:
        await self._request()
        if action.kind not in self.capabilities.actions:
            raise PermanentError(f"demo: cannot {action.kind.replace('_', ' ')}")
        target = action.payload.get("remote_id")
        if action.kind in ("edit_reply", "delete_reply") and not self._ours(target):
            raise PermanentError(f"demo: HTTP 404 no post {str(target)[:60]!r} of ours to "
                                 f"{action.kind.split('_')[0]}")
        now = self.clock()

        def entry(n: int) -> dict[str, Any]:
            done = {"key": action.key, "kind": action.kind, "remote_id": f"act-{n}", "at": now,
                    "conversation": action.conversation_native_id}
            if target is not None:
                done["target"] = target
            if action.kind == "edit_reply":
                done["text"] = action.payload.get("text")
            return done

        recorded = self.actions.record(action.key, entry, now)
        self._landed()
        return ActionResult(recorded["remote_id"], recorded["at"])

    async def lookup_performed(self, action: OutgoingAction) -> ActionResult | None:
        await self._request()
        found = self.actions.find(action.key)
        return ActionResult(found["remote_id"], found["at"]) if found else None

    # ---- push mode: webhook bodies ------------------------------------------------------------------

    def _app_secret(self) -> bytes:
        return (self._secret() or DEMO_APP_SECRET).encode("utf-8")

    def sign(self, body: bytes) -> str:
        """The ``X-Hub-Signature-256`` value the platform sends with ``body`` (Meta's scheme)."""
        return "sha256=" + hmac.new(self._app_secret(), body, hashlib.sha256).hexdigest()

    def webhook_bodies(self, since: float | None, until: float) -> list[tuple[dict[str, str], bytes]]:
        """What the platform POSTs for the pushed customers' messages in (``since``, ``until``]
        (``since`` None: the backlog too), as (headers, raw body), signed, at most ``PUSH_BATCH``
        messages a body. The remote side's part in push mode; the receiver's is ``replydesk.push``."""
        started = self.remote.started_at(until)
        messages: list[IncomingMessage] = []
        if since is None:
            messages.extend(self._backlog(started))
            since = started
        messages.extend(self._stream(started, since, until))
        messages.extend(self._followups(since, until))
        pushed = sorted((m for m in messages if m.platform in PUSHED_PLATFORMS), key=lambda m: m.created_at)
        out = []
        for start in range(0, len(pushed), PUSH_BATCH):
            batch = pushed[start:start + PUSH_BATCH]
            body = json.dumps({"object": "demo_shop", "entry": [
                {"id": self.account, "time": int(until), "messaging": [_event(m) for m in batch]}]},
                ensure_ascii=False).encode("utf-8")
            out.append(({"content-type": "application/json", SIGNATURE_HEADER: self.sign(body)}, body))
        return out

    def verify_push(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        given = headers.get(SIGNATURE_HEADER, "")
        if not given:
            raise PushRejected("demo: the webhook has no X-Hub-Signature-256 header")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self.sign(raw_body).encode()):
            raise PushRejected("demo: the webhook's X-Hub-Signature-256 does not match its body")

    def push_key(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        """The platform's message ids: a body redelivered (or replayed) is the same delivery."""
        try:
            mids = sorted(str(e["message"]["mid"]) for entry in json.loads(raw_body)["entry"]
                          for e in entry["messaging"])
        except (ValueError, KeyError, TypeError):
            return super().push_key(headers, raw_body)
        return "mids:" + hashlib.sha256(",".join(mids).encode()).hexdigest() if mids else \
            super().push_key(headers, raw_body)

    def parse_push(self, raw_body: bytes, headers: Mapping[str, str]) -> list[FetchResult]:
        data = json.loads(raw_body)  # ValueError: the body is kept as unmappable with the reason
        entries = data.get("entry") if isinstance(data, dict) else None
        if data.get("object") != "demo_shop" or not isinstance(entries, list):
            raise ValueError("not a demo webhook body (no 'entry' list for object demo_shop)")
        messages: list[IncomingMessage] = []
        rejected: list[tuple[str, str]] = []
        for entry in entries:
            events = entry.get("messaging") if isinstance(entry, dict) else None
            for event in events if isinstance(events, list) else []:
                try:
                    messages.append(_from_event(event))
                except (KeyError, TypeError, ValueError) as exc:
                    mid = event.get("message", {}).get("mid") if isinstance(event, dict) else None
                    rejected.append((str(mid or "?")[:200], f"unmappable event: {type(exc).__name__}: {exc}"))
        return [FetchResult(messages, None, "push", rejected)]

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        await self._request()
        entry = self.remote.find(reply.key)
        return SendResult(remote_id=entry["remote_id"], sent_at=entry["at"]) if entry else None

    # ---- the simulated customers ----------------------------------------------------------------

    def _conv(self, index: int) -> _Conv:
        r = _rng(self.seed, "conv", index)
        platform, kind = CHANNELS[r.randrange(len(CHANNELS))]
        lang = r.randrange(len(LANGUAGES))
        name = r.choice(LANGUAGES[lang][1])
        handle = (f"{name.split()[0].lower()}{r.randrange(10, 99)}@mail.example" if platform == "email"
                  else f"@{platform}_{r.randrange(1000, 9999)}")
        subject = f"Order #{r.randrange(1000, 9999)}" if platform == "email" else ""
        native = f"c{index}"
        return _Conv(native, platform, kind, lang, name, handle, f"{platform}:{handle}", subject)

    def _text(self, conv: _Conv, r: random.Random, follow_up: bool = False) -> str:
        _, _, openings, follows = LANGUAGES[conv.lang]
        if follow_up:
            return r.choice(follows)
        if conv.kind == "review":
            return r.choice(REVIEW_TEXTS)
        if r.random() < 0.02:
            return r.choice(HOSTILE)
        return r.choice(openings).format(n=r.randrange(1000, 9999))

    def _message(self, conv: _Conv, native: str, text: str, at: float, direction: str = "in") -> IncomingMessage:
        contact = Contact(native_id=conv.contact_id, name=conv.customer, handle=conv.handle,
                          vip=conv.customer in ("Grace Okafor", "Μαρία Παπαδοπούλου"))
        # Where a reply window applies, the message carries its time for the remote side's check.
        meta: dict[str, Any] = {"at": at} if direction == "in" and conv.platform in WINDOWED else {}
        if conv.kind == "review" and direction == "in" and text.startswith(("★", "☆")):
            meta["rating"] = text[:5].count("★")  # the stars a reviewer gave, as Google reports them
        return IncomingMessage(
            native_id=native, conversation_native_id=conv.native, platform=conv.platform, kind=conv.kind,
            contact=contact, text=text, created_at=at, direction=direction,
            author=conv.customer if direction == "in" else "Shop", subject=conv.subject, meta=meta,
        )

    def _backlog(self, started: float) -> list[IncomingMessage]:
        """A few hundred conversations from the last three days, so every SLA state shows at start."""
        out = []
        for i in range(self.backlog):
            r = _rng(self.seed, "backlog", i)
            conv = self._conv(i)
            # a mix of ages so every SLA state shows: fresh, inside the day, days old
            bucket = r.random()
            age = (r.uniform(30, 2400) if bucket < 0.45 else
                   r.uniform(2400, 6 * 3600) if bucket < 0.75 else r.uniform(6 * 3600, 3 * 86400))
            first = started - age
            out.append(self._message(conv, f"b{i}-0", self._text(conv, r), first))
            if r.random() < 0.3 and age > 900:  # answered from the platform's own app earlier
                reply_at = first + r.uniform(300, min(age - 60, 7200))
                out.append(self._message(conv, f"b{i}-r", "Thanks for writing, we're on it!", reply_at, "out"))
                if r.random() < 0.5 and started - reply_at > 120:
                    back = reply_at + r.uniform(60, started - reply_at - 30)
                    out.append(self._message(conv, f"b{i}-1", self._text(conv, r, True), back))
            elif r.random() < 0.25:
                out.append(self._message(conv, f"b{i}-2", self._text(conv, r, True), first + min(age / 2, 600)))
        return out

    def _stream(self, started: float, since: float, now: float) -> list[IncomingMessage]:
        """Message k of the steady stream lands at started + (k + jitter) * pace."""
        out = []
        lo = max(0, int((since - started) / self.pace) - 1)
        hi = int((now - started) / self.pace) + 1
        for k in range(lo, hi + 1):
            r = _rng(self.seed, "stream", k)
            at = started + (k + r.random()) * self.pace
            if not (since < at <= now):
                continue
            if r.random() < 0.35:  # the same customer writes again in an earlier conversation
                conv = self._conv(r.randrange(self.backlog + k) if self.backlog + k else 0)
                text = self._text(conv, r, follow_up=True)
            else:
                conv = self._conv(self.backlog + k)
                text = self._text(conv, r)
            out.append(self._message(conv, f"s{k}", text, at))
        return out

    def _followups(self, since: float, now: float) -> list[IncomingMessage]:
        """Some customers answer back 20 s - 3 min after a reply reaches them."""
        out = []
        for entry in self.remote.ledger():
            r = _rng(self.seed, "followup", entry["key"])
            if r.random() >= 0.4:
                continue
            at = float(entry["at"]) + r.uniform(20, 180)
            if since < at <= now:
                conv = self._conv_by_native(entry["conversation"])
                if conv is not None:
                    out.append(self._message(conv, f"f-{entry['key'][:16]}", self._text(conv, r, True), at))
        return out

    def _conv_by_native(self, native: str) -> _Conv | None:
        if native.startswith("c") and native[1:].isdigit():
            return self._conv(int(native[1:]))
        return None
