"""The layering rules of README's "How it is built", checked on every module's imports (by AST).

Each layer says which of our modules and which libraries it may import; a module that breaks a
rule is named with the file, line, what it imported and the rule, e.g.
``storage/doctor.py:44: replydesk.storage.doctor imports replydesk.sync — storage: ...``.
Every import counts, at module level or inside a function or ``TYPE_CHECKING`` block: a lazy
import still couples the layers. Outside storage, no module runs SQL (no ``sqlite3``, no
``.execute``), so the engine orchestrates and the console reads only through storage functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support import REPO

#: Checkout folder -> the package it installs as (pyproject's package-dir).
PACKAGES = {"replydesk": "replydesk", "storage": "replydesk.storage", "providers": "replydesk.providers",
            "tui": "replydesk.tui"}

#: Pure functions and data: nothing but the standard library and each other.
PURE_CORE = frozenset({"replydesk.model", "replydesk.vocabulary", "replydesk.sla", "replydesk.slaspec", "replydesk.slaconfig",
                       "replydesk.bizcal", "replydesk.timeparse", "replydesk.safetext", "replydesk.platforms",
                       "replydesk.windows", "replydesk.keys", "replydesk.searchsyntax", "replydesk.csat",
                       "replydesk.foreground"})
#: The config modules (``config.py``, ``slaconfig.py``: its ``sla:`` section, ``rulesconfig.py``: its
#: ``rules:`` and ``csat:`` sections) validate YAML. ``options.py`` holds the base every provider's
#: account options build on, ``listening.py`` the ``listening:`` queries providers run; ``paths.py``
#: where the config and the workspace live (platformdirs), light enough for the read commands.
CONFIG_MODULES = frozenset({"replydesk.config", "replydesk.slaconfig", "replydesk.options", "replydesk.listening",
                            "replydesk.rulesconfig", "replydesk.paths"})
CONFIG_LIBS = frozenset({"pydantic", "pydantic_core", "yaml", "platformdirs"})
#: The SQL statements a module outside storage must not run itself.
SQL_CALLS = frozenset({"execute", "executemany", "executescript"})
NETWORK_STDLIB = frozenset({"http", "urllib.request", "socket", "ssl", "smtplib", "imaplib"})


@dataclass(frozen=True)
class Layer:
    """Who may import what. ``first_party``/``libraries`` None: anything not in ``never``."""

    name: str
    rule: str
    members: tuple[str, ...]  # module names or package prefixes ("replydesk.storage.")
    first_party: frozenset[str] | None
    libraries: frozenset[str] | None
    never: frozenset[str] = field(default_factory=frozenset)  # names or prefixes, ours or libraries'

    def covers(self, module: str) -> bool:
        return any(module == m or (m.endswith(".") and module.startswith(m)) for m in self.members)


def _prefixed(name: str, names: frozenset[str]) -> bool:
    return any(name == n or name.startswith(n + ".") or (n.endswith(".") and name.startswith(n)) for n in names)


#: First match wins, so the config modules come before the pure core they are part of.
LAYERS: tuple[Layer, ...] = (
    Layer("config", "config modules import the standard library, the pure core, pydantic, yaml and platformdirs, "
          "and the provider registry (each account is validated by its provider's options; provider modules are "
          "cheap to import by contract: their wire libraries load with the first request)",
          tuple(sorted(CONFIG_MODULES)), PURE_CORE | CONFIG_MODULES | {"replydesk.providers"}, CONFIG_LIBS),
    Layer("pure core", "model (and its vocabulary), sla, slaspec, bizcal, timeparse, safetext, platforms, windows, keys, searchsyntax, "
          "csat and foreground (the console's key in flight, which background loops step aside for) import only the standard library, "
          "each other and regex (grapheme clusters, for counting as platforms count)",
          tuple(sorted(PURE_CORE - CONFIG_MODULES)), PURE_CORE, frozenset({"regex"})),
    Layer("storage", "storage imports only the pure core, storage, database libraries and ijson (the import "
          "file's JSON array, streamed); it knows nothing of HTTP",
          ("replydesk.storage.",), PURE_CORE | {"replydesk.storage."}, frozenset({"psycopg", "ijson"}),
          NETWORK_STDLIB),
    Layer("providers", "a provider imports the pure core, the keyring (secrets), other provider modules and "
          "its HTTP/parsing libraries; never storage or the console",
          ("replydesk.providers.",), PURE_CORE | {"replydesk.providers.", "replydesk.providers", "replydesk.secrets",
                                                  "replydesk.options", "replydesk.listening"},
          frozenset({"httpx", "regex", "chardet", "pydantic"}), frozenset({"sqlite3"})),
    Layer("console", "the console (tui/) never imports a provider, the sync engine, httpx or sqlite3: it reads and "
          "writes through storage functions in workers",
          ("replydesk.tui.",), None, None,
          frozenset({"replydesk.providers", "replydesk.sync", "httpx", "sqlite3", "sqlite_utils"})),
    Layer("cli", "the command line may open the console; it never imports Textual itself",
          ("replydesk.cli",), None, None, frozenset({"textual", "textual_plotext", "sqlite3"})),
    Layer("engine", "the engine and the rest of replydesk/ never import the console or Textual, and run no SQL "
          "themselves",
          ("replydesk.",), None, None,
          frozenset({"replydesk.tui", "textual", "textual_plotext", "sqlite3", "sqlite_utils"})),
)


@dataclass(frozen=True)
class Import:
    line: int
    name: str  # the module imported, resolved to its installed name


def module_name(path: Path) -> str:
    """``storage/doctor.py`` -> ``replydesk.storage.doctor`` (the installed names)."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> Iterator[tuple[Path, str]]:
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path, module_name(path)


def _is_ours(name: str) -> bool:
    return name == "replydesk" or name.startswith("replydesk.")


def _exists(name: str) -> bool:
    """Whether ``name`` is one of our modules or packages (to tell ``from x import module`` from a name)."""
    parts = name.split(".")
    if parts[0] != "replydesk":
        return False
    top = parts[1] if len(parts) > 1 else None
    folder = top if top in PACKAGES else "replydesk"
    rest = parts[2:] if top in PACKAGES else parts[1:]
    base = REPO / folder / Path(*rest) if rest else REPO / folder
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every module ``module``'s source imports (``from x import y`` counts as ``x.y`` when y is a module)."""
    found: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in sorted((n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)),
                       key=lambda n: n.lineno):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                found.append(Import(node.lineno, candidate if _is_ours(origin) and _exists(candidate) else origin))
    return found


def sql_calls(source: str) -> list[tuple[int, str]]:
    """Lines that run SQL directly: ``x.execute(...)`` and friends, or reach for a ``.conn``."""
    by_line: dict[int, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            by_line[node.lineno] = f".{node.func.attr}()"
        elif isinstance(node, ast.Attribute) and node.attr == "conn":
            by_line.setdefault(node.lineno, ".conn")
    return sorted(by_line.items())


def _allowed(layer: Layer, name: str) -> bool:
    if _prefixed(name, layer.never):
        return False
    top = name.split(".")[0]
    if _is_ours(name):
        return layer.first_party is None or _prefixed(name, layer.first_party)
    if top in sys.stdlib_module_names or top == "__future__":
        return True
    return layer.libraries is None or top in layer.libraries


def violations(path: Path, module: str, source: str) -> list[str]:
    """Every rule ``module`` breaks, one line each: where, what, which rule."""
    layer = next((candidate for candidate in LAYERS if candidate.covers(module)), None)
    if layer is None or module == "replydesk":
        return []
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    out = [f"{where}:{imp.line}: {module} imports {imp.name} — {layer.name}: {layer.rule}"
           for imp in imports(source, module, path.name == "__init__.py")
           if imp.name != module and not imp.name.startswith(module + ".") and not _allowed(layer, imp.name)]
    if layer.name != "storage":
        out += [f"{where}:{line}: {module} runs SQL ({what}) — SQL lives in storage/: call a storage function"
                for line, what in sql_calls(source)]
    return out


def test_every_module_keeps_the_layering_rules() -> None:
    broken = [v for path, module in our_modules() for v in violations(path, module, path.read_text("utf-8"))]
    assert not broken, "layering rules broken:\n" + "\n".join(broken)


def test_a_broken_rule_names_the_module_and_the_rule() -> None:
    """The checker itself: the violations this project once had (and others) are each reported."""
    cases = {
        REPO / "storage" / "doctor.py": "def _lock_holder(d):\n    from replydesk.sync import EngineLock\n",
        REPO / "replydesk" / "sync.py": "def f(db):\n    return db.conn.execute('SELECT 1')\n",
        REPO / "tui" / "app.py": "import sqlite3\nfrom replydesk.providers import mastodon\n",
        REPO / "providers" / "mastodon.py": "from replydesk.storage import queries\nimport textual\n",
        REPO / "replydesk" / "model.py": "import httpx\n",
        REPO / "replydesk" / "workspace.py": "from replydesk.tui.app import ReplydeskApp\n",
    }
    found = {path.name: violations(path, module_name(path), source) for path, source in cases.items()}
    assert found["doctor.py"] == ["storage/doctor.py:2: replydesk.storage.doctor imports replydesk.sync — "
                                  f"storage: {LAYERS[2].rule}"]
    assert [v.split(" — ")[0] for v in found["sync.py"]] == ["replydesk/sync.py:2: replydesk.sync runs SQL (.execute())"]
    assert [v.split(" — ")[0] for v in found["app.py"]] == [
        "tui/app.py:1: replydesk.tui.app imports sqlite3", "tui/app.py:2: replydesk.tui.app imports replydesk.providers.mastodon"]
    assert [v.split(" — ")[0] for v in found["mastodon.py"]] == [
        "providers/mastodon.py:1: replydesk.providers.mastodon imports replydesk.storage.queries",
        "providers/mastodon.py:2: replydesk.providers.mastodon imports textual"]
    assert found["model.py"][0].endswith("pure core: " + LAYERS[1].rule)
    assert "imports replydesk.tui.app — engine" in found["workspace.py"][0]


def test_relative_and_package_imports_resolve_to_installed_names() -> None:
    found = imports("from . import queries\nfrom .db import Database\nfrom replydesk import providers\n",
                    "replydesk.storage.search")
    assert [i.name for i in found] == ["replydesk.storage.queries", "replydesk.storage.db", "replydesk.providers"]


def test_console_and_cli_start_without_the_network_stack() -> None:
    """Start-up cost: importing the console and the CLI loads no httpx, no provider and no engine
    (they load when a sync starts), and the CLI alone loads no Textual."""
    probe = ("import sys, {mod}; print(' '.join(m for m in sys.modules if m.split('.')[0] in "
             "('httpx', 'textual') or m.startswith(('replydesk.providers', 'replydesk.sync'))))")
    for mod, banned in (("replydesk.tui.app, replydesk.cli", ("httpx", "replydesk.providers", "replydesk.sync")),
                        ("replydesk.cli", ("httpx", "replydesk.providers", "replydesk.sync", "textual"))):
        loaded = subprocess.run([sys.executable, "-c", probe.format(mod=mod)], capture_output=True, text=True,
                                check=True, cwd=REPO).stdout.split()
        assert not [m for m in loaded if m.split(".")[0] in banned or m.startswith(banned)], (mod, loaded)
