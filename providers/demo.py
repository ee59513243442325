"""The demo platform: a small shop's customers on nine channels, simulated, with a real remote side.

It is a provider like any other (same engine, same outbox). The "remote side" lives in the
workspace: ``demo-remote.json`` fixes when the shop opened (so ages and SLA states are stable),
and ``demo-ledger.jsonl`` records every reply the platform accepted, as a real platform would.
It honours idempotency keys like Mastodon does: a repeated key returns the first result and posts
nothing, so against it no reply ever needs to end ``unknown``; tests use the ledger as the referee.

Everything the customers write is a pure function of (seed, time): the backlog, the steady stream
at ``pace`` seconds, and follow-ups to our replies (derived from the ledger). The cursor is a time
watermark, so a re-fetch returns exactly what appeared since.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.options import AccountOptions, Duration, Strict
from replydesk.platforms import PlatformFacts
from replydesk.providers.base import (
    Capabilities,
    Offline,
    Provider,
    RateLimited,
    SecretGetter,
    TransientError,
)

LEDGER = "demo-ledger.jsonl"
REMOTE_STATE = "demo-remote.json"
REPEATS = "demo-repeats.jsonl"  # keys sent again and deduplicated by the platform

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

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir)
        self.ledger_path = self.dir / LEDGER
        self.repeats_path = self.dir / REPEATS
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
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.ledger_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            torn = self._top_up(fd)
            first = self._by_key.get(reply.key)
            if first is not None:  # a repeated key: the first result, nothing posted
                self._note_repeat(reply.key, now)
                return first
            entry = {
                "key": reply.key, "remote_id": f"post-{len(self._entries) + 1}",
                "conversation": reply.conversation_native_id, "text": reply.text, "at": now,
                "private": reply.private,
            }
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
                                can_lookup_sent=True)

    def __init__(self, account: str, options: DemoOptions | dict[str, Any], secret: SecretGetter, *,
                 data_dir: Path, clock=time.time) -> None:  # noqa: ANN001 - a zero-arg clock
        super().__init__(account, options, secret)
        opts: DemoOptions = self.options
        self.seed = opts.seed
        self.pace = max(opts.pace, 0.05)
        self.backlog = opts.backlog
        faults = opts.faults
        self.fail = faults.fail
        self.latency = faults.latency
        self.ratelimit = faults.ratelimit
        self.offline = faults.offline
        self.lost_ack = faults.lost_ack
        self.retry_after = faults.retry_after
        self.crash_after_accept = faults.crash_after_accept
        self.poll_interval = float(opts.poll_interval or min(5.0, self.pace))
        self.remote = DemoRemote(data_dir)
        self.clock = clock
        self._faults = random.Random()  # faults are chance, not part of the seeded story

    def facts(self) -> dict[str, PlatformFacts]:
        """Every platform the shop is simulated on, with the facts of the real platform (its provider
        module's, or the registry's for platforms that have no module yet)."""
        from replydesk import providers

        platforms = dict.fromkeys(platform for platform, _ in CHANNELS)
        return {p: f for p in platforms if (f := providers.platform_facts(p)) is not None}

    # ---- the wire -------------------------------------------------------------------------------

    async def _request(self) -> None:
        """Every call crosses the simulated network: latency, outages, 5xx and 429 happen here."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.offline:
            raise Offline("demo platform unreachable (offline)")
        roll = self._faults.random()
        if roll < self.ratelimit:
            raise RateLimited(f"HTTP 429 Too Many Requests (Retry-After: {self.retry_after:g})",
                              reset_at=self.clock() + self.retry_after)
        if roll < self.ratelimit + self.fail:
            raise TransientError("HTTP 503 Service Unavailable")

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
        return [FetchResult(messages=messages, cursor={"t": now})]

    async def send(self, reply: OutgoingReply) -> SendResult:
        await self._request()
        entry = self.remote.accept(reply, self.clock())
        if self.crash_after_accept and self._faults.random() < self.crash_after_accept:
            os.kill(os.getpid(), signal.SIGKILL)  # posted and durable, but we never hear the answer
        if self._faults.random() < self.lost_ack:
            raise TransientError("connection reset after the request was sent")
        return SendResult(remote_id=entry["remote_id"], sent_at=entry["at"])

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
        return IncomingMessage(
            native_id=native, conversation_native_id=conv.native, platform=conv.platform, kind=conv.kind,
            contact=contact, text=text, created_at=at, direction=direction,
            author=conv.customer if direction == "in" else "Shop", subject=conv.subject,
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
