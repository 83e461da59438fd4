"""The operator map in a real browser on the sample city: the offline base map (streets, waterways,
district names in the page's language, landmarks, scale bar), the legend, closed roads and a
dispatched unit's route, an alert card and its place on the map, and the list's filters."""

from __future__ import annotations

import math
import re

import orjson
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from command.config import SAMPLE_DATA
from command.keys import Keys

from .conftest import click, severe_console_errors, sign_in, text_of, wait
from .test_dashboard import figure_data, start_paused_at

pytestmark = pytest.mark.browser

ZONES = {f["properties"]["id"]: f["properties"] for f in
         orjson.loads((SAMPLE_DATA / "zones.geojson").read_bytes())["features"]}


def layer_names(driver) -> list[str]:
    return driver.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "return g && g.layout.map ? (g.layout.map.layers || []).map(l => l.name || '') : [];")


def labels(driver, kind: str) -> dict[str, str]:
    return driver.execute_script(
        f"const out = {{}}; document.querySelectorAll('.map-label-{kind}').forEach(n => out[n.dataset.id] = n.textContent);"
        "return out;")


def map_view(driver) -> dict:
    return driver.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "const m = g._fullLayout.map._subplot.map; const c = m.getCenter();"
        "return {lon: c.lng, lat: c.lat, zoom: m.getZoom()};")


@pytest.fixture(scope="module")
def sample_drill(app_server):
    """The sample exercise paused 20 h in: alerts open, roads closed by incidents."""
    _, client, _ = app_server
    return start_paused_at(client, "jiangcheng_flood", "3600", 20 * 3_600_000)


def test_the_sample_map_has_an_offline_base_a_scale_and_a_legend_in_both_languages(app_server, browser, sample_drill):
    base, client, _ = app_server
    sign_in(browser, base, "operator")
    wait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".maplibregl-canvas")))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    wait(browser, 30).until(lambda d: {"streets-arterial", "streets-bridge", "waterways", "closed-roads"}
                            <= set(layer_names(d)))
    # district names as HTML over the map, in English; the scale bar says how far 1 bar is
    wait(browser).until(lambda d: len(labels(d, "district")) == len(ZONES))
    assert labels(browser, "district") == {k: p["name"] for k, p in ZONES.items()}
    scale = browser.find_element(By.ID, "map-scale").text
    assert re.fullmatch(r"\d+(\.\d+)? (m|km)", scale), scale
    # landmarks: a trace of their own with their names
    names = [c[1] for c in figure_data(browser, 4, "customdata")]
    assert "City Central Hospital" in names and "Riverside Depot" in names
    # closed roads are drawn: the sample's road closures at 20 h (INC-001, INC-007, the levee breach INC-010)
    closed = browser.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "const l = g.layout.map.layers.find(l => l.name === 'closed-roads');"
        "return l.source.features.map(f => f.properties.incident);")
    keys = Keys(sample_drill)
    in_force = {c["id"] for c in map(orjson.loads, client.hvals(keys.road_closures)) if c.get("closed") is None}
    assert closed and set(closed) <= in_force
    # the legend explains roads, closures, routes, landmarks, resource types and warnings
    legend = text_of(browser, "map-legend")
    for word in ("main road", "bridge", "closed", "route of a dispatched unit", "hospital", "depot", "shelter",
                 "pump", "rescue boat", "Warnings", "available", "high risk", "red"):
        assert word in legend, word
    browser.save_screenshot("/tmp/map_en.png")

    # in Chinese: the district names, the scale and the legend follow
    click(browser, browser.find_element(By.ID, "shell-lang"))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "map-legend"), "图例"))
    wait(browser).until(lambda d: labels(d, "district") == {k: p["name_zh"] for k, p in ZONES.items()})
    wait(browser).until(lambda d: re.fullmatch(r"\d+(\.\d+)? (米|公里)", d.find_element(By.ID, "map-scale").text))
    legend = text_of(browser, "map-legend")
    for word in ("主干道", "桥梁", "封闭", "已调派资源的路线", "医院", "避难所", "水泵", "救生艇", "预警"):
        assert word in legend, word
    assert "市中心医院" in [c[1] for c in figure_data(browser, 4, "customdata")]
    assert severe_console_errors(browser) == []


def test_a_card_shows_its_place_on_the_map_and_the_map_its_card(app_server, browser, sample_drill):
    base, client, _ = app_server
    sign_in(browser, base, "operator")
    wait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".maplibregl-canvas")))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    # a station's alert card: its subject is on the stations trace
    anchor = "//div[contains(@class,'alert-card')]//span[contains(@class,'card-anchor')][@data-kind='station']"
    wait(browser, 30).until(EC.presence_of_element_located((By.XPATH, anchor)))
    wait(browser).until(lambda d: len(figure_data(d, 0, "lon") or []) > 0)
    subject = browser.find_element(By.XPATH, anchor).get_attribute("data-subject")
    card = browser.find_element(By.XPATH, anchor + "/ancestor::div[contains(@class,'alert-card')]")
    before = map_view(browser)
    click(browser, card.find_element(By.CSS_SELECTOR, ".what"))  # the card's text, not a button
    # the map centres on the station and rings it; the card is marked; the station's trend opens
    st = browser.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "const i = g.data[0].customdata.findIndex(c => c[0] === arguments[0]);"
        "return [g.data[0].lon[i], g.data[0].lat[i]];", subject)
    wait(browser).until(lambda d: math.hypot(map_view(d)["lon"] - st[0], map_view(d)["lat"] - st[1]) < 1e-3)
    assert map_view(browser)["zoom"] >= max(13, before["zoom"]) - 0.01
    ring = wait(browser).until(EC.presence_of_element_located((By.ID, "map-highlight")))
    assert ring.get_attribute("data-subject") == subject and "map-highlight" in ring.get_attribute("class")
    assert "card-selected" in card.get_attribute("class")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#map-station-trend .js-plotly-plot")))
    title = browser.execute_script("return document.querySelector('#map-station-trend .js-plotly-plot').layout.title.text")
    assert f"({subject})" in title
    # the ring sits on the station's place on the screen
    gap = browser.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot'); const m = g._fullLayout.map._subplot.map;"
        "const p = m.project(arguments[0]); const r = document.getElementById('map-highlight').getBoundingClientRect();"
        "const b = m.getContainer().getBoundingClientRect();"
        "return Math.hypot(b.left + p.x - (r.left + r.width / 2), b.top + p.y - (r.top + r.height / 2));", st)
    assert gap < 3, gap

    # map -> card: a click on another alerted station's marker scrolls to its card and marks it
    others = browser.find_elements(By.XPATH, anchor)
    other = next(a.get_attribute("data-subject") for a in others if a.get_attribute("data-subject") != subject)
    browser.execute_script("document.querySelector('.map-side').scrollTop = 0;")
    browser.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "const i = g.data[0].customdata.findIndex(c => c[0] === arguments[0]);"
        "g.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: i, customdata: g.data[0].customdata[i]}]});",
        other)
    target = browser.find_element(By.XPATH, f"{anchor}[@data-subject='{other}']/ancestor::div[contains(@class,'alert-card')]")
    wait(browser).until(lambda d: "card-selected" in target.get_attribute("class"))
    assert "card-selected" not in card.get_attribute("class")
    wait(browser).until(lambda d: d.execute_script(
        "const r = arguments[0].getBoundingClientRect(), s = document.querySelector('.map-side').getBoundingClientRect();"
        "return r.top >= s.top - 1 && r.bottom <= s.bottom + 1;", target))
    assert browser.find_element(By.ID, "map-highlight").get_attribute("data-subject") == other
    assert severe_console_errors(browser) == []


def test_the_list_filters_by_level_and_a_dispatch_draws_its_route(app_server, browser, sample_drill):
    base, client, _ = app_server
    keys = Keys(sample_drill)
    sign_in(browser, base, "operator")
    wait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".maplibregl-canvas")))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exercise-banner"), "EXERCISE"))
    wait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".alert-card")))
    levels = {orjson.loads(client.get(keys.alert(fp.decode())))["level"] for fp in client.zrange(keys.alerts_open, 0, -1)}
    assert len(levels) >= 2
    # only red: every card is red, and the others are counted as hidden
    for lv in ("orange", "yellow"):
        click(browser, browser.find_element(By.XPATH, f"//*[@id='map-filter-level']//input[@value='{lv}']"))
    def shown(d):  # in one go: the list may be drawn again between two calls
        return d.execute_script(
            "const h = document.getElementById('map-queue-hidden');"
            "return [Array.from(document.querySelectorAll('.alert-card')).map(c => c.className), h && h.textContent];")

    wait(browser).until(lambda d: shown(d)[0] and all("lvl-border-red" in c for c in shown(d)[0]))
    assert re.match(r"\d+ alerts hidden by the filters", shown(browser)[1] or "")

    def dimming(d):  # [[station level, opacity]] on the map, or None when nothing is dimmed
        return d.execute_script(
            "const t = document.querySelector('#map-graph .js-plotly-plot').data[0];"
            "const op = t.marker.opacity; if (!Array.isArray(op)) return null;"
            "return t.customdata.map((c, i) => [c[4], op[i]]);")

    # the map dims the stations the filter leaves out: only the red ones stay bright
    def only_red_bright(d) -> bool:  # waited for: the map redraws once per filter click
        dim = dimming(d)
        return bool(dim) and any(lv == "red" for lv, _ in dim) and any(lv != "red" for lv, _ in dim) \
            and all((op == 1) == (lv == "red") for lv, op in dim)

    wait(browser).until(only_red_bright)
    for lv in ("orange", "yellow"):
        click(browser, browser.find_element(By.XPATH, f"//*[@id='map-filter-level']//input[@value='{lv}']"))
    wait(browser).until(EC.invisibility_of_element_located((By.ID, "map-queue-hidden")))
    wait(browser).until(lambda d: dimming(d) is None)

    # dispatch one card's recommendation: its units' routes appear on the map, along the roads
    button = "//div[contains(@class,'alert-card')]//button[normalize-space()='Dispatch']"
    wait(browser).until(EC.presence_of_element_located((By.XPATH, button)))
    def routes(d) -> int:  # the route trace holds one None after each route
        return (figure_data(d, 3, "lon") or []).count(None)

    before = routes(browser)
    click(browser, browser.find_element(By.XPATH, button))
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "map-toast"), "Dispatched"))
    wait(browser, 20).until(lambda d: routes(d) > before)
    assert severe_console_errors(browser) == []
