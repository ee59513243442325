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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import Capabilities, Offline, Provider, RateLimited, SecretGetter, TransientError
from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult

LEDGER = "demo-ledger.jsonl"
REMOTE_STATE = "demo-remote.json"

CHANNELS: list[tuple[str, str]] = [
    ("email", "email"), ("x", "mention"), ("x", "dm"), ("facebook", "comment"), ("facebook", "dm"),
    ("instagram", "comment"), ("instagram", "dm"), ("google", "review"), ("whatsapp", "dm"),
    ("telegram", "dm"), ("mastodon", "mention"), ("bluesky", "mention"),
]

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
    """The platform's side of the wire: its clock anchor and its ledger, in the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir)
        self.ledger_path = self.dir / LEDGER
        self.state_path = self.dir / REMOTE_STATE

    def started_at(self, now: float) -> float:
        try:
            return float(json.loads(self.state_path.read_text())["started_at"])
        except (OSError, ValueError, KeyError):
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"started_at": now}))
            os.replace(tmp, self.state_path)
            return now

    def ledger(self) -> list[dict[str, Any]]:
        try:
            with self.ledger_path.open(encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []

    def accept(self, reply: OutgoingReply, now: float) -> dict[str, Any]:
        """Post a reply exactly once per idempotency key; durable (fsync) before we answer."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.ledger_path.open("a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.seek(0)
                entries = [json.loads(line) for line in fh if line.strip()]
                for entry in entries:
                    if entry["key"] == reply.key:
                        return entry  # a repeated key: the first result, nothing posted
                entry = {
                    "key": reply.key, "remote_id": f"post-{len(entries) + 1}",
                    "conversation": reply.conversation_native_id, "text": reply.text, "at": now,
                    "private": reply.private,
                }
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                return entry
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class DemoProvider(Provider):
    platform = "demo"
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, supports_idempotency=True,
                                can_lookup_sent=True)

    def __init__(self, account: str, options: dict[str, Any], secret: SecretGetter, *,
                 data_dir: Path, clock=time.time) -> None:  # noqa: ANN001 - a zero-arg clock
        super().__init__(account, options, secret)
        self.seed = int(options.get("seed", 42))
        self.pace = max(float(options.get("pace", 20.0)), 0.05)
        self.backlog = int(options.get("backlog", 240))
        faults = options.get("faults") or {}
        self.fail = float(faults.get("fail", 0.0))
        self.latency = float(faults.get("latency", 0.0))
        self.ratelimit = float(faults.get("ratelimit", 0.0))
        self.offline = bool(faults.get("offline", False))
        self.lost_ack = float(faults.get("lost_ack", 0.0))
        self.poll_interval = float(options.get("poll_interval") or min(5.0, self.pace))
        self.remote = DemoRemote(data_dir)
        self.clock = clock
        self._faults = random.Random()  # faults are chance, not part of the seeded story

    # ---- the wire -------------------------------------------------------------------------------

    async def _request(self) -> None:
        """Every call crosses the simulated network: latency, outages, 5xx and 429 happen here."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.offline:
            raise Offline("demo platform unreachable (offline)")
        roll = self._faults.random()
        if roll < self.ratelimit:
            raise RateLimited("HTTP 429 Too Many Requests (Retry-After: 2)", reset_at=self.clock() + 2)
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
        if self._faults.random() < self.lost_ack:
            raise TransientError("connection reset after the request was sent")
        return SendResult(remote_id=entry["remote_id"], sent_at=entry["at"])

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        await self._request()
        for entry in self.remote.ledger():
            if entry["key"] == reply.key:
                return SendResult(remote_id=entry["remote_id"], sent_at=entry["at"])
        return None

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
