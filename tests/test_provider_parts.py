"""The parts every provider shares: payload coercers, the bad-item rule and the paging rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.providers import payload
from replydesk.providers.base import AuthError, TransientError
from replydesk.providers.payload import BadItem


def message(native: str) -> IncomingMessage:
    return IncomingMessage(native_id=native, conversation_native_id="c", platform="x", kind="dm",
                           contact=Contact("u", "U"), text="hi", created_at=1.0)


def test_identifiers_are_printable_strings_and_numbers_only_where_the_platform_sends_them() -> None:
    assert payload.ident({"id": "117"}, "id") == "117"
    assert payload.ident({"id": 117}, "id", numbers=True) == "117"
    with pytest.raises(BadItem, match="id missing or not a valid string"):
        payload.ident({"id": 117}, "id")
    for bad in ({"id": True}, {"id": "a\x1bb"}, {"id": ""}, {"id": "x" * 3000}, "not a dict", None):
        with pytest.raises(BadItem):
            payload.ident(bad, "id", numbers=True)
    assert payload.ident({}, "handle", required=False) == ""


def test_times_are_strict_where_the_item_needs_one_and_lenient_where_they_only_inform() -> None:
    assert payload.timestamp("2026-11-23T10:00:00Z", "created_at") == 1795428000.0
    for bad in (None, 5, "yesterday"):
        with pytest.raises(BadItem, match="created_at"):
            payload.timestamp(bad, "created_at")
    assert payload.timestamp_or("not a time", 42.0) == 42.0
    assert payload.timestamp_or("2026-11-23T10:00:00+02:00", 42.0) == 1795428000.0 - 7200


def test_other_coercers() -> None:
    assert payload.integer({"n": 3}, "n") == 3
    with pytest.raises(BadItem):
        payload.integer({"n": True}, "n")
    assert payload.optional_int({"n": "3"}, "n") is None
    assert payload.text({"t": 3}, "t") == "" and payload.text({"t": "x"}, "t") == "x"
    assert payload.mapping({"m": []}, "m", required=False) == {}
    assert payload.items({"l": {"a": 1}}, "l") == []


async def test_bad_items_are_rejected_with_a_reason_and_the_others_kept() -> None:
    def map_one(item: Any) -> IncomingMessage | list[IncomingMessage] | None:
        if item == "skip":
            return None
        if item == "pair":
            return [message("p1"), message("p2")]
        return message(payload.ident(item, "id"))

    batch = [{"id": "a"}, {"id": 5}, "skip", "pair", {"id": "b"}, ["weird"]]
    messages, rejected = payload.map_each(batch, map_one, lambda item: str(item)[:10])
    assert [m.native_id for m in messages] == ["a", "p1", "p2", "b"]
    assert rejected == [("{'id': 5}", "id missing or not a valid string"),
                        ("['weird']", "id missing or not a valid string")]

    async def async_one(item: Any) -> IncomingMessage:
        return map_one(item)  # type: ignore[return-value]

    again, rejected_again = await payload.map_items(batch, async_one, lambda item: str(item)[:10])
    assert [m.native_id for m in again] == [m.native_id for m in messages] and rejected_again == rejected


async def test_a_provider_error_is_not_an_item_problem() -> None:
    def map_one(item: Any) -> IncomingMessage:
        raise AuthError("token revoked")

    with pytest.raises(AuthError):
        payload.map_each([1], map_one, str)
    with pytest.raises(AuthError):
        await payload.map_items([1], map_one, str)


def pages(*steps: FetchResult | Exception) -> AsyncIterator[FetchResult]:
    async def walk() -> AsyncIterator[FetchResult]:
        for step in steps:
            if isinstance(step, Exception):
                raise step
            yield step
    return walk()


async def test_a_walk_keeps_its_finished_pages_when_a_later_one_fails() -> None:
    first = FetchResult([message("m1")], {"page": 1})
    assert await payload.keep_finished(pages(first, TransientError("502"))) == [first]
    rejected_only = FetchResult([], {"page": 1}, rejected=[("x", "bad")])
    assert await payload.keep_finished(pages(rejected_only, TransientError("502"))) == [rejected_only]


async def test_a_walk_with_nothing_in_hand_raises_so_the_account_shows_it() -> None:
    with pytest.raises(TransientError):
        await payload.keep_finished(pages(TransientError("502")))
    with pytest.raises(TransientError):  # an empty page is nothing worth keeping the error quiet for
        await payload.keep_finished(pages(FetchResult([], {"page": 1}), TransientError("502")))


async def test_streams_chain_under_the_same_rule() -> None:
    first = FetchResult([message("m1")], {"n": 1}, "mentions")

    async def mentions() -> list[FetchResult]:
        return [first]

    async def direct() -> list[FetchResult]:
        raise TransientError("direct is down")

    assert await payload.keep_finished(payload.chain(mentions, direct)) == [first]
    with pytest.raises(TransientError):
        await payload.keep_finished(payload.chain(direct, mentions))
