"""The translation table: complete in both languages, and every key the code asks for is in it.

The source (command/, layouts/, feeds/, app.py) is read, not run: every literal key passed to `t(...)`
or `i18n.t(...)` must be in the table, and a key built at run time (`t(f"level.{lv}")`) must at least
have its literal start in it. A page finds its words in the central table (command/i18n.py) or in
its own `i18n.add(...)`, never in another page's, so no page depends on another being imported.
"""

from __future__ import annotations

import ast
import importlib
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from command import i18n

from .conftest import ROOT

SOURCES = ("command", "layouts", "feeds", "app.py")
HELPERS = {"t"}  # the translation helpers: `t(key, lang, **fmt)`, also called as `i18n.t(...)`


@dataclass(frozen=True)
class Use:
    path: Path
    line: int
    text: str
    exact: bool  # False: only the key's literal start is known (an f-string, a concatenation)

    def __str__(self) -> str:
        what = repr(self.text) if self.exact else f"{self.text!r}…"
        return f"{self.path.relative_to(ROOT)}:{self.line}: {what}"


def source_files(root: Path = ROOT) -> list[Path]:
    out: list[Path] = []
    for name in SOURCES:
        p = root / name
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else []
    return out


def _is_helper(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in HELPERS
    return isinstance(func, ast.Attribute) and func.attr in HELPERS and \
        isinstance(func.value, ast.Name) and func.value.id == "i18n"


def _keys_of(node: ast.expr) -> Iterator[tuple[str, bool]]:
    """The keys an argument can be: (text, exact). Unknown expressions yield nothing."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value, True
    elif isinstance(node, ast.JoinedStr):
        prefix = ""
        for part in node.values:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                break
            prefix += part.value
        if prefix:
            yield prefix, False
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        for text, _ in _keys_of(node.left):
            yield text, False
    elif isinstance(node, ast.IfExp):
        yield from _keys_of(node.body)
        yield from _keys_of(node.orelse)
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
        for value in node.value.values:
            yield from _keys_of(value)


def uses(path: Path) -> list[Use]:
    """Every key (or key start) `path` passes to a translation helper."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and _is_helper(node.func) and node.args:
            out += [Use(path, node.lineno, text, exact) for text, exact in _keys_of(node.args[0])]
    return out


def added_tables(path: Path) -> dict[str, dict[str, str]]:
    """The words `path` registers itself: the literal tables of its `i18n.add({...})` calls."""
    table: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "i18n" and node.args:
            table.update(ast.literal_eval(node.args[0]))
    return table


def central_table() -> dict[str, dict[str, str]]:
    """`TEXT` as command/i18n.py writes it, before any page adds its own words."""
    tree = ast.parse((ROOT / "command" / "i18n.py").read_text())
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "TEXT":
            return ast.literal_eval(node.value)
    raise AssertionError("command/i18n.py defines no TEXT table")


def missing(found: list[Use], table: dict) -> list[Use]:
    return [u for u in found
            if not (u.text in table if u.exact else any(k.startswith(u.text) for k in table))]


def page_of(path: Path, root: Path = ROOT) -> tuple[Path, ...]:
    """The files that make one page: a package under layouts/ (layouts/operator/), else the file alone."""
    rel = path.relative_to(root)
    if rel.parts[0] == "layouts" and len(rel.parts) > 2:
        return tuple(sorted((root / "layouts" / rel.parts[1]).rglob("*.py")))
    return (path,)


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, str]]:
    """The whole table as the running app has it: every module that adds words imported."""
    for path in source_files():
        if added_tables(path):
            rel = path.relative_to(ROOT).with_suffix("")
            importlib.import_module(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return i18n.TEXT


def test_every_key_has_english_and_chinese(table):
    empty = [f"{k} ({lang})" for k, v in table.items() for lang in i18n.LANGS if not (v.get(lang) or "").strip()]
    assert empty == []
    fields = string.Formatter()
    odd = [k for k, v in table.items()
           if {f for _, f, _, _ in fields.parse(v["zh"]) if f} - {f for _, f, _, _ in fields.parse(v["en"]) if f}]
    assert odd == [], "Chinese text asks for a {field} the English (and so the callers) does not give"
    assert i18n.t("nav.map", "zh") == "指挥地图" and i18n.t("nav.map", "en") == "Operations map"
    assert i18n.t("no.such.key", "zh") == "no.such.key"


def test_every_key_the_code_asks_for_is_in_the_table(table):
    found = [u for path in source_files() for u in uses(path)]
    assert len(found) > 100, "the scan found almost no translation calls: has the helper been renamed?"
    assert [str(u) for u in missing(found, table)] == []


def test_each_page_finds_its_words_centrally_or_in_itself():
    """No page borrows another's words: a shared word belongs in command/i18n.py."""
    central = central_table()
    borrowed = []
    for path in source_files():
        own: dict = {}
        for part in page_of(path):
            own.update(added_tables(part))
        borrowed += missing(uses(path), {**central, **own})
    assert [str(u) for u in borrowed] == []
    doubled = [k for path in source_files() for k in added_tables(path) if k in central]
    assert doubled == [], "a page adds a word the central table has already"


def test_the_scan_catches_a_missing_key(tmp_path):
    """The check can fail: a key nobody defined, literal or as the start of a built one, is reported."""
    src = tmp_path / "layouts" / "page.py"
    src.parent.mkdir()
    src.write_text('from command import i18n\nfrom command.i18n import t\n'
                   'i18n.add({"page.own": {"en": "Own", "zh": "自有"}})\n'
                   't("app.title", "en")\nt("page.own")\nt("no-such-key", "en")\n'
                   'i18n.t(f"nowhere.{x}", "zh")\nt("level." + lv)\nt("a.b" if x else "page.own")\n')
    found = uses(src)
    assert [(u.text, u.exact) for u in found] == [("app.title", True), ("page.own", True), ("no-such-key", True),
                                                  ("nowhere.", False), ("level.", False), ("a.b", True),
                                                  ("page.own", True)]
    table = {**central_table(), **added_tables(src)}
    assert [(u.line, u.text) for u in missing(found, table)] == [(6, "no-such-key"), (7, "nowhere."), (9, "a.b")]
