"""The data catalogue: `/catalog` (a bilingual page) and `GET /api/catalog` (JSON).

Every dataset the platform holds, as the classification file describes it (command/publish/catalog.py):
titles in English and Chinese, owner department, source, format, expected update frequency, its
classification and its fields', last update, number of records, and whether it is overdue against its
frequency on the namespace's clock. A viewer sees the entries they are cleared for. `?ns=` chooses the
namespace (default live); `?lang=en|zh` the page's language.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import flask
import jinja2

from command import i18n
from command.errors import NotFound
from command.i18n import t
from command.keys import LIVE, Keys
from command.publish import catalog
from command.trust.classification import viewer_of

from .access import ANY_ROLE, route_policy
from .common import rds
from .web_basics import pick_lang

i18n.add({
    "catalog.title": {"en": "Data catalogue", "zh": "数据目录"},
    "catalog.intro": {"en": "Every dataset the platform holds, who owns it, how it is graded and how fresh it is. "
                            "You see the datasets your clearance opens; fields you are not cleared for are masked "
                            "or left out wherever they appear.",
                      "zh": "平台所持有的全部数据集：归属部门、密级与更新情况。仅显示您的密级可以查看的数据集；"
                            "未获授权的字段在任何地方都会被遮盖或省略。"},
    "catalog.namespace": {"en": "Namespace", "zh": "命名空间"},
    "catalog.clock": {"en": "clock", "zh": "时钟"},
    "catalog.your_clearance": {"en": "your clearance", "zh": "您的密级"},
    "catalog.dataset": {"en": "Dataset", "zh": "数据集"},
    "catalog.owner": {"en": "Owner", "zh": "归属部门"},
    "catalog.source": {"en": "Source", "zh": "来源"},
    "catalog.format": {"en": "Format", "zh": "格式"},
    "catalog.frequency": {"en": "Expected update", "zh": "预期更新频率"},
    "catalog.on_event": {"en": "on event", "zh": "按事件"},
    "catalog.classification": {"en": "Classification", "zh": "密级"},
    "catalog.fields": {"en": "Fields", "zh": "字段"},
    "catalog.get_mask": {"en": "masked for you", "zh": "对您遮盖"},
    "catalog.get_drop": {"en": "left out for you", "zh": "对您省略"},
    "catalog.last_update": {"en": "Last update", "zh": "最近更新"},
    "catalog.records": {"en": "Records", "zh": "记录数"},
    "catalog.state": {"en": "State", "zh": "状态"},
    "catalog.overdue": {"en": "overdue", "zh": "逾期未更新"},
    "catalog.on_time": {"en": "on time", "zh": "正常"},
    "catalog.footnote": {"en": "A dataset is overdue when its last update is older than {n} times its expected "
                               "frequency. The grades are set in one file a data officer edits "
                               "(sample_data/classification.yaml).",
                         "zh": "最近更新早于预期频率的 {n} 倍即视为逾期。密级由数据管理员在一个文件中设定"
                               "（sample_data/classification.yaml）。"},
})

_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                autoescape=True, trim_blocks=True, lstrip_blocks=True)
WORDS = ("title", "intro", "namespace", "clock", "your_clearance", "dataset", "owner", "source", "format",
         "frequency", "on_event", "classification", "fields", "get_mask", "get_drop", "last_update",
         "records", "state", "overdue", "on_time")


def _keys() -> Keys:
    """The namespace of `?ns=` (default live); an unknown one is 404."""
    ns = flask.request.args.get("ns") or LIVE
    try:
        keys = Keys(ns)
    except ValueError:
        raise NotFound(f"no namespace {ns!r}", field="namespace") from None
    if ns != LIVE and not rds().exists(keys.meta):
        raise NotFound(f"no namespace {ns!r}", field="namespace")
    return keys


def _catalogue() -> dict:
    user = flask.g.get("api_user") or flask.session.get("user")
    return catalog.catalogue(rds(), _keys(), viewer_of(user))


def page(cat: dict, lang: str, query: dict[str, str]) -> str:
    """The catalogue as an HTML page in `lang` (each dataset's title in the other language too)."""
    other = "zh" if lang == "en" else "en"
    words = {w: t(f"catalog.{w}", lang) for w in WORDS}
    words.update(app_title=t("app.title", lang), sign_out=t("shell.sign_out", lang),
                 language=t("shell.language", lang),
                 footnote=t("catalog.footnote", lang, n=f"{cat['overdue_after']:g}"))
    levels = {lv: t(f"class.{lv}", lang) for lv in ("public", "internal", "secret")}
    return _TEMPLATES.get_template("catalog.html").render(
        cat=cat, words=words, levels=levels, lang=lang, other=other, html_lang="zh-CN" if lang == "zh" else "en",
        other_href="/catalog?" + urlencode({**query, "lang": other}))


def register_routes(server: flask.Flask) -> None:
    @server.route("/catalog")
    @route_policy(allow=ANY_ROLE, note="each sees the datasets their clearance opens")
    def _catalog_page():
        lang = pick_lang(flask.request)
        query = {"ns": flask.request.args["ns"]} if flask.request.args.get("ns") else {}
        return page(_catalogue(), lang, query)

    @server.route("/api/catalog")
    @route_policy(allow=ANY_ROLE, tokens=True, note="read_internal tokens; each sees what its clearance opens")
    def _catalog_api():
        return flask.jsonify(_catalogue())
