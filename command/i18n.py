"""One translation table for every user-facing string: English and Simplified Chinese.

`t(key, lang, **fmt)` looks a key up; a key missing in a language falls back to English, and a key
missing everywhere shows as the key itself (and a test catches it). Keys are dotted by page.
"""

from __future__ import annotations

LANGS = ("en", "zh")
DEFAULT_LANG = "en"

TEXT: dict[str, dict[str, str]] = {
    "app.title": {"en": "Flood command", "zh": "防汛指挥"},
    "app.exercise_banner": {"en": "EXERCISE · NOT A REAL EVENT", "zh": "演练 · 非真实事件"},
    "level.yellow": {"en": "yellow", "zh": "黄色"},
    "level.orange": {"en": "orange", "zh": "橙色"},
    "level.red": {"en": "red", "zh": "红色"},
    "nav.map": {"en": "Operations map", "zh": "指挥地图"},
    "nav.department": {"en": "Department tasks", "zh": "部门任务"},
    "nav.exercise": {"en": "Exercise", "zh": "演练"},
    "nav.feeds": {"en": "Feeds", "zh": "数据源"},
}


def t(key: str, lang: str | None = None, **fmt: object) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    text = entry.get(lang or DEFAULT_LANG) or entry.get(DEFAULT_LANG) or key
    return text.format(**fmt) if fmt else text


def add(table: dict[str, dict[str, str]]) -> None:
    """Pages register their strings here at import (each key once: a clash is a bug)."""
    for key, entry in table.items():
        if key in TEXT and TEXT[key] != entry:
            raise KeyError(f"translation key {key!r} defined twice")
        TEXT[key] = entry
