"""The after-action report in a real browser: its charts draw with no network, under the web app's
Content-Security-Policy once the report's inline scripts are allowed by hash (`inline_script_hashes`),
and its print stylesheet applies on paper."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from command.keys import Keys
from command.publish.report import (
    after_action,
    collect_alerts,
    collect_quarantine,
    collect_recommendations,
    inline_script_hashes,
    render_html,
)
from layouts.web_headers import content_security_policy

from ..test_report import exercise as exercise  # noqa: F401, PLC0414 - the shared fixture
from .conftest import wait

pytestmark = pytest.mark.browser


@pytest.fixture
def served(exercise):  # noqa: F811
    """The report on loopback under the web app's CSP: /allowed adds the report's script hashes,
    /refused does not."""
    keys, rep, _ = exercise
    html = render_html(rep).encode()
    policies = {"/allowed": content_security_policy(inline_script_hashes(html.decode())),
                "/refused": content_security_policy([])}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path not in policies:  # the browser's own favicon request: nothing to give
                self.send_response(204)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", policies[self.path])
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", keys
    server.shutdown()


def test_the_charts_draw_under_the_apps_policy_and_the_report_prints(browser, served):
    base, _ = served
    browser.get(f"{base}/allowed")
    wait(browser).until(lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == 4)
    # every chart has drawn its traces: the timeline's lanes, the chain's bars, the hydrographs' lines
    assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length") > 8
    assert browser.execute_script("return document.querySelectorAll('[data-chart=\"chain\"] .bars .point').length") >= 4
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    # on paper: a white page, no dark header
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    bg = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    header = browser.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor")
    assert bg == "rgb(255, 255, 255)" and header in ("rgba(0, 0, 0, 0)", "transparent")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") != "rgb(255, 255, 255)"

    # the same page without the hashes: the policy stops the scripts, the tables remain
    browser.get(f"{base}/refused")
    wait(browser).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == 0
    assert browser.execute_script("return document.querySelectorAll('tr.objective').length") == 2


def test_the_hashes_cover_every_inline_script(served, r):
    _, keys = served
    html = render_html(after_action(r, Keys(keys.ns), collect_alerts(r, keys), collect_recommendations(r, keys),
                                    collect_quarantine(r, keys)))
    # plotly.js and the drawing code: the two scripts that run (the charts' data is JSON, not run)
    assert len(inline_script_hashes(html)) == html.count("<script>") == 2
