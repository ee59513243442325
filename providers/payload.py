"""Reading untrusted platform payloads: one set of coercers, one bad-item rule, one paging rule.

Every field of a platform payload is untrusted. A mapper reads fields through the coercers below,
which either return a value of the promised type or raise ``BadItem`` with a reason a person can
read; ``map_each``/``map_items`` turn each failure into a rejected item (stored with its reason, shown by
``doctor``) and goes on with the others, so one malformed item never stops a batch. Provider errors
(auth, rate limits, the network) are not item problems: they pass through and stop the fetch.

``keep_finished`` is the paging rule: a walk over a cursor keeps every finished page when a later
page fails (each page carries its own cursor, so the next poll resumes exactly there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from replydesk.model import FetchResult, IncomingMessage, parse_iso
from replydesk.providers.base import ProviderError

T = TypeVar("T")
Rejected = list[tuple[str, str]]

#: Items read from one page: far above any page size we ask for (40-100), so only a hostile or
#: broken answer meets it; the rest of such a page is one rejected entry, not millions.
MAX_PAGE_ITEMS = 1000


class BadItem(ValueError):
    """A platform item we cannot map; it goes to ``FetchResult.rejected`` with this reason."""


def is_identifier(value: object) -> bool:
    """A usable id/handle from a payload: a non-empty printable string of sane length (no controls,
    no lone surrogates, which SQLite cannot even store)."""
    return isinstance(value, str) and 0 < len(value) <= 2048 and value.isprintable()


def reject_reason(exc: Exception) -> str:
    """Why an item was rejected: our message for known problems, the exception type for the rest
    (every item is untrusted: whatever is wrong with one, the others are still stored)."""
    return str(exc) if isinstance(exc, BadItem) else f"unexpected payload shape ({type(exc).__name__})"


# ---- coercers --------------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def ident(obj: Any, key: str, *, required: bool = True, numbers: bool = False) -> str:
    """An id or handle (see ``is_identifier``). ``numbers``: the platform may send an id as a JSON
    number (Mastodon-compatible servers do), taken as its decimal string. Missing and not required: ''."""
    value = _get(obj, key)
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if is_identifier(value):
        return value
    if required:
        raise BadItem(f"{key} missing or not a valid string")
    return ""


def text(obj: Any, key: str, *, required: bool = False) -> str:
    """Free text (a name, a caption, a message): any string; missing and not required: ''."""
    value = _get(obj, key)
    if isinstance(value, str):
        return value
    if required:
        raise BadItem(f"{key} missing or not a string")
    return ""


def integer(obj: Any, key: str) -> int:
    """A JSON integer (never a bool, which Python would take for one)."""
    value = _get(obj, key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadItem(f"{key} missing or not an integer")


def optional_int(obj: Any, key: str) -> int | None:
    value = _get(obj, key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mapping(obj: Any, key: str, *, required: bool = True) -> dict[str, Any]:
    """A nested object; missing and not required: {}."""
    value = _get(obj, key)
    if isinstance(value, dict):
        return value
    if required:
        raise BadItem(f"{key} missing or not an object")
    return {}


def items(obj: Any, key: str) -> list[Any]:
    """A list field; anything else is an empty list (its items still need checking one by one)."""
    value = _get(obj, key)
    return value if isinstance(value, list) else []


def timestamp(value: Any, what: str) -> float:
    """An ISO 8601 time the item cannot do without (when it was written): epoch seconds, or BadItem."""
    if not isinstance(value, str):
        raise BadItem(f"{what} missing or not a string")
    try:
        return parse_iso(value)
    except (ValueError, OverflowError):
        raise BadItem(f"{what} is not an ISO time") from None


def timestamp_or(value: Any, default: float) -> float:
    """An ISO 8601 time that is only informative (when the platform says it posted our reply):
    epoch seconds, or ``default`` when it is missing or malformed."""
    try:
        return timestamp(value, "time")
    except BadItem:
        return default


# ---- mapping a batch ---------------------------------------------------------------------------------

Mapped = IncomingMessage | Iterable[IncomingMessage] | None


def map_each(batch: Iterable[T], map_one: Callable[[T], Mapped], label: Callable[[T], str],
             rejected: Rejected | None = None) -> tuple[list[IncomingMessage], Rejected]:
    """Map every item of ``batch``; an item whose mapping fails for any reason other than a provider
    error lands in ``rejected`` as ``(label(item), reason)`` and the others go on.

    ``map_one`` returns a message, several (a status with its thread), or None (an item of a type we
    do not take). ``map_items`` is the same for mappers that await (they fetch context).
    """
    messages: list[IncomingMessage] = []
    rejected = [] if rejected is None else rejected
    for item in _capped(batch, rejected):
        try:
            _collect(map_one(item), messages)
        except ProviderError:
            raise
        except Exception as exc:  # a bad item never stops the batch, whatever is wrong with it
            rejected.append((_label(label, item), reject_reason(exc)))
    return messages, rejected


async def map_items(batch: Iterable[T], map_one: Callable[[T], Mapped | Awaitable[Mapped]],
                    label: Callable[[T], str], rejected: Rejected | None = None
                    ) -> tuple[list[IncomingMessage], Rejected]:
    """``map_each`` for a mapper that may be a coroutine function."""
    messages: list[IncomingMessage] = []
    rejected = [] if rejected is None else rejected
    for item in _capped(batch, rejected):
        try:
            mapped = map_one(item)
            if hasattr(mapped, "__await__"):
                mapped = await mapped
            _collect(mapped, messages)
        except ProviderError:
            raise
        except Exception as exc:  # a bad item never stops the batch, whatever is wrong with it
            rejected.append((_label(label, item), reject_reason(exc)))
    return messages, rejected


def _capped(batch: Iterable[T], rejected: Rejected) -> Iterable[T]:
    """The first ``MAX_PAGE_ITEMS`` of ``batch``; the rest is noted once in ``rejected``."""
    for i, item in enumerate(batch):
        if i >= MAX_PAGE_ITEMS:
            total = f"{len(batch)} items" if hasattr(batch, "__len__") else "more items"
            rejected.append(("(page)", f"the page holds {total}, over the limit of {MAX_PAGE_ITEMS}: "
                                       f"only the first {MAX_PAGE_ITEMS} were read"))
            return
        yield item


def _collect(mapped: Any, messages: list[IncomingMessage]) -> None:
    if isinstance(mapped, IncomingMessage):
        messages.append(mapped)
    elif mapped is not None:
        messages.extend(mapped)


def _label(label: Callable[[Any], str], item: Any) -> str:
    try:
        return str(label(item))[:200] or "?"
    except Exception:
        return "?"


# ---- paging ----------------------------------------------------------------------------------------


async def keep_finished(pages: AsyncIterator[FetchResult]) -> list[FetchResult]:
    """Every page of a walk; a provider error after finished pages ends the walk with them.

    Kept only when they brought something (messages or rejected items): then they are stored with
    their cursors and the next poll resumes after them, meeting the error again if it lasts. With
    nothing in hand the error is raised, so the account shows it and backs off.
    Used for a walk over one cursor and for a fetch over several streams alike.
    """
    results: list[FetchResult] = []
    try:
        async for page in pages:
            results.append(page)
    except ProviderError:
        if not any(r.messages or r.rejected for r in results):
            raise
    return results


async def chain(*walks: Callable[[], Awaitable[list[FetchResult]]]) -> AsyncIterator[FetchResult]:
    """The pages of several walks (streams), one after the other, for ``keep_finished``."""
    for walk in walks:
        for page in await walk():
            yield page
