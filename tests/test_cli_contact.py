"""``replydesk contact``: the customer card from the command line, on a real demo workspace.

Each write must be the card screen's own (the same ``card`` event, the same fields), a contact is
named as ``show`` names a conversation (an id, a unique end of one) or by a handle or name, and an
unknown or ambiguous one is a usage error (exit 2) that lists what to type instead.
"""

from __future__ import annotations

import io
import json

import pytest

from replydesk.cli import main
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest
from support import FIXED_NOW, card_of


def run(ws, capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:  # noqa: ANN001
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["--data-dir", str(ws.data_dir), *argv])
    out, err = capsys.readouterr()
    return code, out, err


LONERS = (("u1", "Odile Marchetti"), ("u2", "Kofi Mensah"))


def loners(ws, n: int) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """``n`` customers of a single contact each, (contact id, handle, their conversation id): the demo
    shop's customers all share their names across platforms, so these write in on Mastodon."""
    db = ws.open_db()
    try:
        ingest.ingest(db, "masto", [FetchResult(messages=[IncomingMessage(
            native_id=f"m-{native}", conversation_native_id=f"t-{native}", platform="mastodon", kind="mention",
            contact=Contact(native_id=native, name=name, handle=f"@{native}x"), text=f"hello from {name}",
            created_at=FIXED_NOW - 600, direction="in") for native, name in LONERS[:n]], cursor={})])
    finally:
        db.close()
    return [(f"masto:{native}", f"@{native}x", f"masto:t-{native}") for native, _ in LONERS[:n]]



def card_events(ws) -> list[tuple[str, str]]:  # noqa: ANN001
    db = ws.open_db()
    try:
        return [(r[0], json.loads(r[1])["what"]) for r in db.conn.execute(
            "SELECT actor, data FROM events WHERE kind='card' ORDER BY seq")]
    finally:
        db.close()


def test_show_names_a_customer_by_id_conversation_handle_or_name(demo_ws, capsys) -> None:  # noqa: ANN001
    ((who, handle, conv),) = loners(demo_ws, 1)
    name = card_of(demo_ws.data_dir, who).contacts[0].name
    shown = []
    for ref in (who, conv, handle, handle.removeprefix("@").upper(), name):
        code, out, err = run(demo_ws, capsys, "contact", "show", ref, "--json")
        assert code == 0, (ref, err)
        shown.append(json.loads(out))
    assert all(s == shown[0] for s in shown)
    card = shown[0]
    assert card["person"] == who and [c["id"] for c in card["contacts"]] == [who]
    assert card["contacts"][0]["handle"] == handle and card["note"] == "" and card["vip"] is False
    assert conv in [c["id"] for c in card["conversations"]]
    assert {"status", "platform", "sla_state"} <= set(card["conversations"][0])
    code, out, _ = run(demo_ws, capsys, "contact", "show", conv)
    assert code == 0 and handle in out and conv in out and "note: (none)" in out


def test_a_customer_on_several_platforms_is_one_card_by_its_name(demo_ws, capsys) -> None:  # noqa: ANN001
    code, out, err = run(demo_ws, capsys, "contact", "show", "grace okafor", "--json")  # every platform, one customer
    assert code == 0, err
    card = json.loads(out)
    assert len({c["platform"] for c in card["contacts"]}) > 1
    assert card["vip"] is True  # the demo platform says Grace is a VIP


def test_the_edits_are_the_card_screens_and_show_in_the_card(demo_ws, capsys, monkeypatch) -> None:  # noqa: ANN001
    ((who, handle, conv),) = loners(demo_ws, 1)
    code, out, err = run(demo_ws, capsys, "contact", "note", handle, "  ships to Lyon  ")
    assert (code, err) == (0, "") and out.startswith("Note saved:")
    assert card_of(demo_ws.data_dir, who).note == "ships to Lyon"  # trimmed, as the card's field saves it
    code, out, _ = run(demo_ws, capsys, "contact", "note", conv, "--file", "-", "--json",
                       stdin="line one\nline two\n", monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["note"] == "line one\nline two"
    assert run(demo_ws, capsys, "contact", "name", who, "Mme Dupont")[0] == 0
    assert run(demo_ws, capsys, "contact", "vip", who, "--on")[0] == 0
    card = card_of(demo_ws.data_dir, who)
    assert (card.note, card.name, card.vip) == ("line one\nline two", "Mme Dupont", True)
    code, out, _ = run(demo_ws, capsys, "contact", "show", who)  # the team's name first, then the platforms'
    assert out.splitlines()[0].startswith("Mme Dupont") and "★ VIP" in out.splitlines()[0]
    assert run(demo_ws, capsys, "contact", "vip", who, "--off")[0] == 0
    assert run(demo_ws, capsys, "contact", "note", who, "")[0] == 0  # empty clears, as on the card
    card = card_of(demo_ws.data_dir, who)
    assert (card.note, card.vip) == ("", False)
    # one event per edit, by the workspace's agent, as the console's edits log them
    assert card_events(demo_ws) == [("me", "note"), ("me", "note"), ("me", "name"), ("me", "vip"),
                                    ("me", "vip"), ("me", "note")]


def test_merge_and_split_from_the_command_line(demo_ws, capsys) -> None:  # noqa: ANN001
    (one, _, _), (two, two_handle, _) = loners(demo_ws, 2)
    assert run(demo_ws, capsys, "contact", "note", two, "asked for a refund")[0] == 0
    code, out, err = run(demo_ws, capsys, "contact", "merge", one, two_handle, "--json")
    assert code == 0, err
    merged = json.loads(out)
    assert {c["id"] for c in merged["contacts"]} == {one, two} and all(c["merged"] for c in merged["contacts"])
    assert merged["note"] == "asked for a refund"  # kept, as the card's merge keeps it
    assert {c.id for c in card_of(demo_ws.data_dir, two).contacts} == {one, two}
    code, _, err = run(demo_ws, capsys, "contact", "merge", one, two)
    assert code == 2 and "already this customer's" in err
    code, out, err = run(demo_ws, capsys, "contact", "split", one, two_handle)
    assert code == 0 and out.startswith("Split off " + two), err
    assert [c.id for c in card_of(demo_ws.data_dir, one).contacts] == [one]
    assert [c.id for c in card_of(demo_ws.data_dir, two).contacts] == [two]
    code, _, err = run(demo_ws, capsys, "contact", "split", one, one)
    assert code == 2 and "nothing to split" in err
    assert [what for _, what in card_events(demo_ws)] == ["note", "merge", "split"]


def test_an_unknown_or_ambiguous_contact_is_a_usage_error_with_the_candidates(demo_ws, capsys) -> None:  # noqa: ANN001
    code, out, err = run(demo_ws, capsys, "contact", "show", "nobody-like-this")
    assert (code, out) == (2, "") and "no contact matches 'nobody-like-this'" in err
    code, out, err = run(demo_ws, capsys, "contact", "vip", "1", "--on")  # the end of many ids
    assert code == 2 and "different customers; name one by its id" in err
    assert len([line for line in err.splitlines() if line.startswith("  demo:")]) >= 2
    assert card_events(demo_ws) == []  # nothing was changed
    code, _, err = run(demo_ws, capsys, "contact", "note", "grace okafor")
    assert code == 2 and "TEXT or --file" in err
    with pytest.raises(SystemExit) as done:
        main(["--data-dir", str(demo_ws.data_dir), "contact", "vip", "grace okafor"])  # --on or --off
    assert done.value.code == 2


def test_customer_text_on_the_card_is_shown_visibly(demo_ws, capsys) -> None:  # noqa: ANN001
    ((who, _, _),) = loners(demo_ws, 1)
    hostile = "pay \x1b]8;;https://evil.example\x1b\\here\u202e now"
    assert run(demo_ws, capsys, "contact", "note", who, hostile)[0] == 0
    code, out, _ = run(demo_ws, capsys, "contact", "show", who)
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and "evil.example" in out
    code, out, _ = run(demo_ws, capsys, "contact", "show", who, "--json")
    assert "\u202e" not in out and json.loads(out)["note"] == hostile  # escaped, the exact text for scripts


def test_every_subcommand_has_help(capsys) -> None:  # noqa: ANN001
    for sub in ("show", "note", "name", "vip", "merge", "split"):
        with pytest.raises(SystemExit) as done:
            main(["contact", sub, "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0 and "CONTACT" in out and "--json" in out, sub
