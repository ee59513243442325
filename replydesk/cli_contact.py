"""``replydesk contact …``: the customer card from the command line, one subcommand per thing the
card screen does (its note, the team's name, VIP, merging another contact in, splitting one off).

A contact is named as a person would name it: a contact id, a conversation id (its customer), a
handle or a display name, or a unique end of an id. Every write is the card screen's own writer
(``storage.contacts``), so in a joined workspace it goes to the team as the console's edit does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

# The storage modules load in the commands: ``replydesk --help`` builds these parsers too.

#: How many candidates an ambiguous name lists.
SHOWN_CANDIDATES = 8


def register(sub: Any, common: argparse.ArgumentParser, jsonopt: argparse.ArgumentParser,
             add: Callable[..., argparse.ArgumentParser], formatter: type[argparse.HelpFormatter],
             exit_usage: int) -> None:
    naming = ("a contact id, a conversation id (its customer), a handle (@ optional), a display name, "
              "or a unique end of an id")
    p = add("contact", lambda a: (a.contact_parser.print_help(), exit_usage)[1],
            "the customer card: show it, edit its note, name and VIP flag, merge and split contacts",
            epilog=f"CONTACT is {naming}. An unknown or ambiguous one is refused with exit 2 (the "
                   "candidates listed).")
    p.set_defaults(contact_parser=p)
    csub = p.add_subparsers(dest="contact_command", metavar="SUBCOMMAND")

    def cmd(name: str, fn: Callable[[argparse.Namespace], int], help_: str, *, writes: bool = True
            ) -> argparse.ArgumentParser:
        c = csub.add_parser(name, parents=[common, jsonopt], help=help_, description=help_,
                            epilog=f"CONTACT is {naming}.", formatter_class=formatter)
        c.set_defaults(func=fn, writes=writes)
        c.add_argument("contact", metavar="CONTACT", help="the customer (see below)")
        return c

    cmd("show", cmd_show, "the customer's card: names, contacts per platform, note, VIP, conversations",
        writes=False)
    c = cmd("note", cmd_note, "set the note about the customer (empty text clears it)")
    c.add_argument("text", nargs="?", metavar="TEXT", help="the note")
    c.add_argument("--file", metavar="FILE", help="read the note from FILE (- for standard input)")
    c = cmd("name", cmd_name, "set the name the team calls the customer (empty: the platforms' names)")
    c.add_argument("name", metavar="NAME")
    c = cmd("vip", cmd_vip, "mark the customer VIP, or not (every contact of the card)")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--on", dest="vip", action="store_true", default=None, help="mark VIP")
    g.add_argument("--off", dest="vip", action="store_false", help="no longer VIP")
    c = cmd("merge", cmd_merge, "record another contact's customer as the same person (the notes are kept)")
    c.add_argument("other", metavar="OTHER", help="the contact to merge in (named like CONTACT)")
    c = cmd("split", cmd_split, "take one contact out of the customer: a customer of its own from now on")
    c.add_argument("which", metavar="HANDLE", help="which of the card's contacts: its handle, name or id")


def _cli() -> Any:
    from replydesk import cli

    return cli


# ---- naming a contact -----------------------------------------------------------------------------


def _describe(db: Any, contact_id: str) -> str:
    from replydesk.storage import contacts

    c, one_line = contacts.contact(db, contact_id), _cli().one_line
    return f"{contact_id} ({c.platform}: {one_line(c.name)} {one_line(c.handle)})".replace(" )", ")") if c else contact_id


def contact_named(db: Any, ref: str) -> str:
    """The one customer ``ref`` names, as one of its contacts' ids; a usage error when none or
    several customers match (with the candidates, so the user can name one by its id)."""
    from replydesk.storage import contacts

    cli = _cli()
    found = contacts.named(db, ref)
    if not found:
        raise cli.UsageError(f"no contact matches {ref!r} (name it by a contact or conversation id, a handle "
                             "or a display name: 'replydesk search' lists conversations)")
    groups = contacts.customers(db, found)
    if len(groups) > 1:
        shown = "\n  ".join(_describe(db, g[0]) for g in groups[:SHOWN_CANDIDATES])
        more = f"\n  … and {len(groups) - SHOWN_CANDIDATES} more" if len(groups) > SHOWN_CANDIDATES else ""
        raise cli.UsageError(f"{ref!r} names {len(groups)} different customers; name one by its id:\n  {shown}{more}")
    return groups[0][0]


def _card(db: Any, contact_id: str) -> Any:
    from replydesk.storage import contacts

    card = contacts.card(db, contact_id)
    if card is None:  # named a moment ago: gone since (another process)
        raise _cli().UsageError(f"no contact {contact_id!r}")
    return card


# ---- output ---------------------------------------------------------------------------------------


def card_json(db: Any, card: Any) -> dict[str, Any]:
    """The card as scripts read it: what the card screen shows, with ids."""
    from replydesk.storage import queries

    cli = _cli()
    rows = queries.history(db, "", card.contacts[0].id, limit=500) if card.contacts else []  # "": no own row
    return {
        "person": card.person, "name": card.name,
        "platform_names": list(dict.fromkeys(c.name or c.handle for c in card.contacts)),
        "vip": card.vip, "note": card.note,
        "contacts": [{"id": c.id, "account": c.account, "platform": c.platform, "name": c.name, "handle": c.handle,
                      "vip": c.vip, "merged": c.linked} for c in card.contacts],
        "conversations": [cli._row_json(r) for r in sorted(rows, key=lambda r: (-r.last_message_at, r.id))],
    }


def _print_card(record: dict[str, Any]) -> None:
    cli = _cli()
    say, one_line = cli.say, cli.one_line
    names = " / ".join(one_line(n) for n in record["platform_names"])
    head = f"{one_line(record['name'])}  (on the platforms: {names})" if record["name"] else names
    say(head + ("  ★ VIP" if record["vip"] else "") + f"  [{record['person']}]")
    say("note: " + (one_line(record["note"]) if record["note"] else "(none)"))
    say("")
    say(f"contacts ({len(record['contacts'])}):")
    for c in record["contacts"]:
        say(f"  {c['platform']:<9} {one_line(c['account'])[:14]:<14} {one_line(c['name'])[:24]:<24} "
            f"{one_line(c['handle'])[:28]:<28} {'merged' if c['merged'] else 'same name'}  {c['id']}")
    convs = record["conversations"]
    still = sum(1 for r in convs if r["status"] != "resolved")
    say("")
    say(f"conversations ({len(convs)}, {still} not resolved):")
    for r in convs:
        say(f"  {r['id']}  {r['platform']:<9} {r['status']:<8} {r['sla_state']:<9} "
            f"{one_line(r['subject'] or r['snippet'])[:60]}")


def _done(args: argparse.Namespace, db: Any, contact_id: str, label: str) -> int:
    """After a write: the card as it is now (JSON), or what was done, in words."""
    cli = _cli()
    card = _card(db, contact_id)
    if args.json:
        cli.emit_json(card_json(db, card))
    else:
        who = card.name or " / ".join(dict.fromkeys(c.name or c.handle for c in card.contacts))
        cli.say(f"{label}: {cli.one_line(who)} [{card.person}]")
    return cli.EXIT_OK


# ---- commands -------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    cli = _cli()
    db = cli._open_to_read(args)
    record = card_json(db, _card(db, contact_named(db, args.contact)))
    if args.json:
        cli.emit_json(record)
    else:
        _print_card(record)
    return cli.EXIT_OK


def _writing(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(database, the card of the named contact, the agent the edit is by)."""
    cli = _cli()
    ws, db = cli._open(args)
    return db, _card(db, contact_named(db, args.contact)), ws.config.ui.agent


def cmd_note(args: argparse.Namespace) -> int:
    from replydesk.storage import contacts

    cli = _cli()
    if (args.text is None) == (args.file is None):
        raise cli.UsageError("contact note needs the note as TEXT or --file FILE (- for standard input), "
                             "not both; an empty TEXT clears it")
    if args.file is None:
        text = args.text
    elif args.file == "-":
        text = sys.stdin.read()
    else:
        from pathlib import Path

        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise cli.UsageError(f"--file {args.file}: {exc}") from None
    if len(text) > contacts.MAX_CARD_TEXT:
        raise cli.UsageError(f"the note is {len(text)} characters: at most {contacts.MAX_CARD_TEXT}")
    db, card, agent = _writing(args)
    note = text.strip()
    contacts.set_note(db, card.person, note, actor=agent)
    return _done(args, db, card.contacts[0].id, "Note saved" if note else "Note cleared")


def cmd_name(args: argparse.Namespace) -> int:
    from replydesk.storage import contacts

    cli = _cli()
    name = args.name.strip()
    if len(name) > contacts.MAX_CARD_TEXT:
        raise cli.UsageError(f"the name is {len(name)} characters: at most {contacts.MAX_CARD_TEXT}")
    db, card, agent = _writing(args)
    contacts.set_name(db, card.person, name, actor=agent)
    return _done(args, db, card.contacts[0].id, "Name saved" if name else "Name cleared (the platforms' names)")


def cmd_vip(args: argparse.Namespace) -> int:
    from replydesk.storage import contacts

    db, card, agent = _writing(args)
    contacts.set_vip(db, [c.id for c in card.contacts], bool(args.vip), actor=agent)
    return _done(args, db, card.contacts[0].id, "VIP on" if args.vip else "VIP off")


def cmd_merge(args: argparse.Namespace) -> int:
    from replydesk.storage import contacts

    cli = _cli()
    db, card, agent = _writing(args)
    other = contact_named(db, args.other)
    if other in {c.id for c in card.contacts}:
        raise cli.UsageError(f"{args.other!r} is already this customer's ({_describe(db, other)}): nothing to merge")
    contacts.merge(db, card.contacts[0].id, other, actor=agent)
    return _done(args, db, card.contacts[0].id, f"Merged {_describe(db, other)}")


def cmd_split(args: argparse.Namespace) -> int:
    from replydesk.storage import contacts

    cli = _cli()
    db, card, agent = _writing(args)
    if len(card.contacts) < 2:
        raise cli.UsageError("only one contact on this card: nothing to split")
    mine = {c.id for c in card.contacts}
    which = [cid for cid in contacts.named(db, args.which) if cid in mine]
    if len(which) != 1:
        listed = "\n  ".join(_describe(db, c.id) for c in card.contacts[:SHOWN_CANDIDATES])
        if len(card.contacts) > SHOWN_CANDIDATES:
            listed += f"\n  … and {len(card.contacts) - SHOWN_CANDIDATES} more ('replydesk contact show' lists them)"
        what = "names none" if not which else f"names {len(which)}"
        raise cli.UsageError(f"{args.which!r} {what} of this card's contacts; name one by its id:\n  {listed}")
    contacts.split(db, which[0], actor=agent)
    rest = next(c.id for c in card.contacts if c.id != which[0])
    return _done(args, db, rest, f"Split off {_describe(db, which[0])}")
