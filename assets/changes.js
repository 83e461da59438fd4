/* The change gate's client (layouts/changes.py): once a second, ask the server whether what this page
 * shows has changed; only then let Dash's callbacks run.
 * - GET /_changes?ns=<namespace>&page=<page> answers {"p": page token, "s": top bar token, "ns": ...};
 *   a token that differs from the last one is set on the store `chg-shell` or on the page's own
 *   (`chg-map`, `chg-dept`: each page has its own, so it goes with the page and so do its callbacks)
 *   (dash_clientside.set_props), which the page's and the top bar's callbacks take as input.
 * - 503 {"down_since": epoch ms}: Redis does not answer; the banner #shell-stale says since when, and
 *   when it answers again every callback runs once (whatever the tokens) so nothing stays stale.
 * - No answer at all, or none within 10 s (the server or the network is down): the banner says that,
 *   from the first failure.
 * - 401: the session ended (signed out elsewhere, idle, removed by an administrator): back to sign-in.
 * What to ask about (namespace, page) and the banner's words come from #shell-ctx's data-ctx
 * (layouts/shell.py).
 * window.ecdChanges counts what happened, for tests. */
(function () {
  "use strict";
  var EVERY_MS = 1000;
  var TIMEOUT_MS = 10000;
  var PAGE_STORES = {map: "chg-map", department: "chg-dept"};  // layouts/operator/layout.py, layouts/department.py
  var state = {asks: 0, changes: 0, key: null, p: null, s: null, downSince: null, offlineSince: null};
  window.ecdChanges = state;

  function context() {
    var el = document.getElementById("shell-ctx");
    var text = el && el.getAttribute("data-ctx");
    if (!text) return null;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function setStore(id, value) {
    var dc = window.dash_clientside;
    if (!dc || typeof dc.set_props !== "function") return false;
    try {
      dc.set_props(id, {data: value});  // a page being replaced may have taken its store with it
    } catch (e) {
      return false;
    }
    state.changes += 1;
    return true;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(ms) { var d = new Date(ms); return pad(d.getHours()) + ":" + pad(d.getMinutes()); }

  function banner(text) {
    var el = document.getElementById("shell-stale");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }

  function word(ctx, key, ms) {
    var w = (ctx.words && ctx.words[key]) || "{time}";
    return w.replace("{time}", hhmm(ms));
  }

  function answered(ctx, status, body) {
    if (status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      return;
    }
    if (status === 503 && body && body.down_since) {
      state.downSince = body.down_since;
      state.offlineSince = null;
      banner(word(ctx, "down_since", body.down_since));
      return;
    }
    var recovered = state.downSince !== null || state.offlineSince !== null;
    if (status !== 200 || !body) {
      return;  // a refusal (400, 403) or another failure: nothing to draw from it
    }
    if (recovered) {
      state.downSince = state.offlineSince = null;
      banner("");
    }
    // after an outage every callback runs once: a change may have come and gone while they could not
    var bump = recovered ? "#" + Date.now() : "";
    if ((body.s !== state.s || bump) && setStore("chg-shell", body.s + bump)) {
      state.s = body.s;
    }
    // the page's own store: only the map and a department's page have one (and the gate a token for them)
    var store = PAGE_STORES[ctx.page];
    if (store && body.p && (body.p !== state.p || bump) && setStore(store, body.p + bump)) {
      state.p = body.p;
    }
  }

  function offline(ctx) {
    if (state.offlineSince === null) state.offlineSince = Date.now();
    if (state.downSince === null) banner(word(ctx, "offline", state.offlineSince));
  }

  function later() { window.setTimeout(tick, EVERY_MS); }

  function tick() {
    var ctx = context();
    if (!ctx || !window.fetch) { later(); return; }
    var key = ctx.ns + "|" + ctx.page;
    if (key !== state.key) { state.key = key; state.p = state.s = null; }
    state.asks += 1;
    var url = "/_changes?ns=" + encodeURIComponent(ctx.ns || "") + "&page=" + encodeURIComponent(ctx.page || "");
    // a server that takes the question but never answers counts as no connection, not as a hung page
    var abort = window.AbortController ? new AbortController() : null;
    var timer = abort ? window.setTimeout(function () { abort.abort(); }, TIMEOUT_MS) : null;
    window.fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"},
                       signal: abort ? abort.signal : undefined})
      .then(function (r) {
        if (timer) window.clearTimeout(timer);
        return r.json().then(function (j) { return [r.status, j]; }, function () { return [r.status, null]; });
      })
      .then(function (res) { answered(ctx, res[0], res[1]); }, function () { offline(ctx); })
      .then(later, later);
  }

  later();
})();
