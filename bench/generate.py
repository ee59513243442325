"""Generate benchmark workspaces through the same ingest path as the sync engine.

A workspace of N conversations and M messages spread over K accounts on every platform, with text in
several scripts (the demo platform's languages plus emoji), conversation ages from minutes to months
so every SLA state shows, and the shop's usual bookkeeping on top (older answered threads resolved,
some tagged, assigned or escalated) through ``storage.actions``. Items go in as provider fetch pages:
``storage.ingest.ingest(db, account, [FetchResult(...)])``, one transaction per page.

Workspaces are cached under ``bench/.cache/`` by size and generator version, so repeated runs reuse
them; a workspace counts as complete only once its ``bench-meta.json`` exists.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from replydesk import providers
from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.providers.demo import CHANNELS, LANGUAGES, REVIEW_TEXTS
from replydesk.storage import actions, platform_facts
from replydesk.storage.db import Database
from replydesk.storage.ingest import ensure_account, ingest
from replydesk.workspace import Workspace

#: Bump when the generated data changes shape, so stale caches are not reused.
#: 2: the bookkeeping walks the conversations in chunks (10M messages fit in memory).
GEN_VERSION = 2
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
META = "bench-meta.json"
PAGE_MESSAGES = 1000  # messages per fetch page (one ingest transaction), like a provider backfill

#: Named sizes: messages -> (conversations, messages). Ten messages per conversation on average.
SIZES: dict[str, tuple[int, int]] = {
    "10k": (1_000, 10_000),
    "100k": (10_000, 100_000),
    "1m": (100_000, 1_000_000),
    "10m": (1_000_000, 10_000_000),  # only when asked for (--sizes ...,10m): about 15 minutes to generate
}
BOOKKEEPING_CHUNK = 20_000  # conversations decided and written at a time

SHOP_REPLIES: list[str] = [
    "Thanks for writing, we're on it! 🙂",
    "Asante kwa kuandika, tunashughulikia agizo lako.",
    "लिखने के लिए धन्यवाद, हम आपका ऑर्डर देख रहे हैं।",
    "Terima kasih kerana menghubungi kami, kami sedang menyemak pesanan anda.",
    "Ευχαριστούμε που μας γράψατε, ελέγχουμε την παραγγελία σας.",
    "Жазғаныңызға рақмет, тапсырысыңызды тексеріп жатырмыз.",
]
EXTRA_SENTENCES: list[str] = [
    "I ordered the dark roast and the grinder.", "Tracking says it's stuck in Dubai.",
    "Please call me back 📞", "My neighbour got hers already.", "It was a gift 🎁 for my mum.",
    "Ninahitaji jibu leo.", "कृपया जल्दी जवाब दें।", "Saya perlukan jawapan hari ini.",
    "Παρακαλώ απαντήστε σύντομα.", "Өтінемін, тезірек жауап беріңіз.", "🙏🙏", "😡 not happy",
]
TAGS = ["refund", "shipping", "damaged", "wholesale", "complaint", "vip", "address-change"]
AGENTS = ["me", "sam", "lee", "ana"]


@dataclass(frozen=True)
class Spec:
    """What to generate; the cache key."""

    conversations: int
    messages: int
    accounts: int = 24
    seed: int = 7
    #: The first conversation's number in the native ids: a second spec for the same accounts
    #: (messages arriving later) must not repeat the first one's ids, or ingest skips them as known.
    first: int = 0

    @property
    def key(self) -> str:
        later = f"-f{self.first}" if self.first else ""
        return f"ws-{self.conversations}c-{self.messages}m-{self.accounts}a-s{self.seed}{later}-v{GEN_VERSION}"


@dataclass
class GenResult:
    data_dir: Path
    spec: Spec
    seconds: float
    messages: int
    conversations: int
    cached: bool


def spec_for(size: str, accounts: int = 24) -> Spec:
    conversations, messages = SIZES[size.lower()]
    return Spec(conversations=conversations, messages=messages, accounts=accounts)


#: every platform the console knows, in a fixed order (the generated workspaces depend on it)
PLATFORMS = ("email", "x", "facebook", "instagram", "google", "whatsapp", "telegram", "mastodon", "bluesky")


def account_names(spec: Spec) -> list[tuple[str, str]]:
    """(account name, platform): every platform, several shops' accounts on each."""
    platforms = list(PLATFORMS)
    return [(f"{platforms[i % len(platforms)]}-shop{i // len(platforms) + 1}", platforms[i % len(platforms)])
            for i in range(max(spec.accounts, 1))]


def _kinds_for(platform: str) -> list[str]:
    return [k for p, k in CHANNELS if p == platform] or ["dm"]


def _message_counts(spec: Spec, rng: random.Random) -> list[int]:
    """At least one message per conversation; the rest skewed so a few threads are long."""
    n = max(spec.conversations, 1)
    counts = [1] * n
    for _ in range(max(spec.messages - n, 0)):
        counts[int(n * rng.random() ** 1.6)] += 1
    return counts


def _age(rng: random.Random) -> float:
    """Seconds since the last message: fresh, today, this week, months back."""
    bucket = rng.random()
    if bucket < 0.08:
        return rng.uniform(60, 40 * 60)
    if bucket < 0.2:
        return rng.uniform(40 * 60, 8 * 3600)
    if bucket < 0.4:
        return rng.uniform(8 * 3600, 7 * 86400)
    return rng.uniform(7 * 86400, 180 * 86400)


def _text(rng: random.Random, lang: int, kind: str, first: bool) -> str:
    _, _, openings, follows = LANGUAGES[lang]
    if kind == "review" and first:
        base = rng.choice(REVIEW_TEXTS)
    elif first:
        base = rng.choice(openings).format(n=rng.randrange(1000, 99999))
    else:
        base = rng.choice(follows)
    if rng.random() < 0.5:
        base += " " + rng.choice(EXTRA_SENTENCES)
    return base


def conversation_messages(spec: Spec, index: int, count: int, account: str, platform: str,
                          now: float) -> list[IncomingMessage]:
    """All messages of conversation ``index`` (deterministic from the seed)."""
    rng = random.Random(spec.seed * 1_000_003 + index)
    kind = rng.choice(_kinds_for(platform))
    lang = rng.randrange(len(LANGUAGES))
    names = LANGUAGES[lang][1]
    customer_no = rng.randrange(max(spec.conversations * 7 // 10, 1))  # some customers write again
    name = names[customer_no % len(names)]
    handle = (f"{name.split()[0].lower()}{customer_no}@mail.example" if platform == "email"
              else f"@{platform}_{customer_no}")
    contact = Contact(native_id=f"u{customer_no}", name=f"{name} {customer_no % 97}", handle=handle,
                      vip=customer_no % 53 == 0)
    subject = f"Order #{rng.randrange(1000, 99999)}" if platform == "email" else ""
    age = _age(rng)
    # Old threads were mostly answered last; recent ones mostly wait on us.
    answered_last = rng.random() < (0.8 if age > 86400 else 0.25)
    times = [now - age]
    for _ in range(count - 1):
        times.append(times[-1] - rng.uniform(60, 6 * 3600))
    times.reverse()
    out: list[IncomingMessage] = []
    number = spec.first + index
    for j, at in enumerate(times):
        last = j == count - 1
        if j == 0:
            direction = "in"
        elif last:
            direction = "out" if answered_last else "in"
        else:
            direction = "out" if rng.random() < 0.45 else "in"
        text = (rng.choice(SHOP_REPLIES) if direction == "out"
                else _text(rng, lang, kind, first=j == 0))
        out.append(IncomingMessage(
            native_id=f"m{number}-{j}", conversation_native_id=f"c{number}", platform=platform, kind=kind,
            contact=contact, text=text, created_at=at, direction=direction,
            author=contact.name if direction == "in" else "Shop", subject=subject,
            parent_native_id=f"m{number}-{j - 1}" if j else None,
        ))
    return out


def pages(spec: Spec, now: float) -> Iterator[tuple[str, FetchResult]]:
    """(account, fetch page) in provider order: each account's conversations, ~PAGE_MESSAGES a page."""
    rng = random.Random(spec.seed)
    counts = _message_counts(spec, rng)
    accounts = account_names(spec)
    per_account: dict[str, list[int]] = {name: [] for name, _ in accounts}
    for index in range(len(counts)):
        per_account[accounts[index % len(accounts)][0]].append(index)
    platform_of = dict(accounts)
    for account, indexes in per_account.items():
        batch: list[IncomingMessage] = []
        page_no = 0
        for index in indexes:
            batch.extend(conversation_messages(spec, index, counts[index], account, platform_of[account], now))
            if len(batch) >= PAGE_MESSAGES:
                page_no += 1
                yield account, FetchResult(messages=batch, cursor={"page": page_no, "bench": True})
                batch = []
        if batch:
            page_no += 1
            yield account, FetchResult(messages=batch, cursor={"page": page_no, "bench": True})


def _bookkeeping(db: Database, spec: Spec, now: float) -> None:
    """What a shop's agents did to the cache: resolve answered threads, tag, assign, escalate.

    Walks the conversations a chunk at a time (by rowid), so memory stays flat at any size."""
    rng = random.Random(spec.seed + 1)
    last_rowid = 0
    while True:
        rows = db.conn.execute(
            "SELECT rowid, id, last_message_at, needs_reply FROM conversations WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last_rowid, BOOKKEEPING_CHUNK),
        ).fetchall()
        if not rows:
            return
        last_rowid = rows[-1][0]
        resolve = [r[1] for r in rows if not r[3] and now - r[2] > 86400 and rng.random() < 0.9]
        resolve += [r[1] for r in rows if r[3] and now - r[2] > 30 * 86400 and rng.random() < 0.7]
        if resolve:
            actions.resolve(db, resolve, actor="bench")
        by_tag: dict[str, list[str]] = {}
        by_agent: dict[str, list[str]] = {}
        escalate: list[str] = []
        for r in rows:
            if rng.random() < 0.1:
                by_tag.setdefault(rng.choice(TAGS), []).append(r[1])
            if rng.random() < 0.15:
                by_agent.setdefault(rng.choice(AGENTS), []).append(r[1])
            if rng.random() < 0.01:
                escalate.append(r[1])
        for tag, tagged in by_tag.items():
            actions.tag(db, tagged, [tag], actor="bench")
        for agent, assigned in by_agent.items():
            actions.assign(db, assigned, agent, actor="bench")
        if escalate:
            actions.escalate(db, escalate, target="helpdesk", reason="bench", actor="bench")


def build(spec: Spec, data_dir: Path, *, progress: Callable[[str], None] | None = None) -> GenResult:
    """Generate ``spec`` into ``data_dir`` (which must not hold a workspace yet)."""
    started = time.perf_counter()
    now = time.time()
    ws = Workspace(Path(data_dir), Config())
    db = ws.open_db()
    try:
        with db.transaction():
            for name, platform in account_names(spec):
                ensure_account(db, name, "bench", platform)
                facts = providers.platform_facts(platform)
                if facts is not None:  # as the engine stores them: the console shows real names
                    platform_facts.save(db, name, {platform: facts})
        done = 0
        last_note = started
        for account, page in pages(spec, now):
            ingest(db, account, [page])
            done += len(page.messages)
            if progress and time.perf_counter() - last_note > 5:
                last_note = time.perf_counter()
                rate = done / (last_note - started)
                progress(f"  generated {done:,}/{spec.messages:,} messages ({rate:,.0f}/s)")
        _bookkeeping(db, spec, now)
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        messages = db.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        conversations = db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
    finally:
        db.close()
    seconds = time.perf_counter() - started
    meta = {"spec": asdict(spec), "generated_at": now, "seconds": round(seconds, 2), "messages": messages,
            "conversations": conversations, "gen_version": GEN_VERSION}
    (Path(data_dir) / META).write_text(json.dumps(meta, indent=1))
    return GenResult(Path(data_dir), spec, seconds, messages, conversations, cached=False)


def cached(spec: Spec, *, cache_dir: Path = CACHE_DIR, log: Callable[[str], None] | None = None) -> GenResult:
    """The cached workspace for ``spec``, generating it first when missing or incomplete."""
    data_dir = cache_dir / spec.key
    meta_path = data_dir / META
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return GenResult(data_dir, spec, meta["seconds"], meta["messages"], meta["conversations"], cached=True)
    if data_dir.exists():
        shutil.rmtree(data_dir)  # an interrupted generation: start over
    cache_dir.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"generating {spec.messages:,} messages / {spec.conversations:,} conversations into {data_dir}")
    return build(spec, data_dir, progress=log)


def stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
