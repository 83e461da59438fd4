/* Alerts that demand attention on the operator page (layouts/operator/attention.py draws what this reads):
 * - a new alert (or one that rose) at the user's chosen level or above plays the bundled sound, and shows
 *   a desktop notification when the user switched them on and the browser allows it;
 * - every unacknowledged alert at that level flashes: its card gets the class `attn-flash`, and a ring
 *   `.attn-pulse[data-fp]` pulses at its place over the map;
 * - the tab title counts the unacknowledged alerts of the top level: "(2) red · Flood command".
 * The server keeps the settings and the alerts; this only reads #attn-data and #attn-prefs (hidden JSON).
 * window.ecdAttention.plays counts the sounds started (a browser may refuse to play before a click). */
(function () {
  "use strict";
  var state = {ns: null, seen: null, plays: 0, notified: 0, flashing: [], title: null, baseTitle: document.title};
  window.ecdAttention = state;

  var parsed = {};  // id -> [text, value]: parse again only when the server drew something new
  function readJson(id) {
    var el = document.getElementById(id);
    if (!el || !el.textContent) return null;
    var text = el.textContent;
    if (parsed[id] && parsed[id][0] === text) return parsed[id][1];
    var value = null;
    try { value = JSON.parse(text); } catch (e) { value = null; }
    parsed[id] = [text, value];
    return value;
  }

  function cardFp(card) {
    try { return JSON.parse(card.id).fp; } catch (e) { return null; }
  }

  function ring(data, level) {
    var i = data.levels.indexOf(level);
    return i < 0 ? -1 : i;
  }

  function sound() {
    var audio = document.getElementById("attn-audio");
    if (!audio) return;
    state.plays += 1;
    try {
      audio.currentTime = 0;
      var p = audio.play();
      if (p && p.catch) p.catch(function () { /* not allowed before the user's first click: the flash stays */ });
    } catch (e) { /* no audio output: the flash stays */ }
  }

  function notify(data, a) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      new Notification(data.title, {body: a[3] + " · " + a[1], tag: a[0]});
      state.notified += 1;
    } catch (e) { /* some browsers only notify from a service worker */ }
  }

  function mapOf() {
    var gd = document.querySelector("#map-graph .js-plotly-plot");
    var sub = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
    return sub && sub.map ? sub.map : null;
  }

  function drawRings(alerts) {
    var map = mapOf();
    var old = document.getElementById("attn-map-layer");
    if (!map) { if (old) old.remove(); return; }
    var box = map.getContainer();
    var layer = old;
    if (!layer || layer.parentNode !== box) {
      if (old) old.remove();
      layer = document.createElement("div");
      layer.id = "attn-map-layer";
      layer.className = "attn-map-layer";
      box.appendChild(layer);
    }
    if (map !== state.map) {  // follow the map as it pans and zooms
      state.map = map;
      map.on("move", function () { drawRings(state.flashing); });
    }
    var keep = {};
    alerts.forEach(function (a) {
      if (a[4] === null || a[5] === null || a[4] === undefined) return;
      var pt = map.project([a[4], a[5]]);
      var el = layer.querySelector('[data-fp="' + CSS.escape(a[0]) + '"]');
      if (!el) {
        el = document.createElement("div");
        el.setAttribute("data-fp", a[0]);
        layer.appendChild(el);
      }
      el.className = "attn-pulse attn-pulse-" + a[1];
      el.style.left = pt.x + "px";
      el.style.top = pt.y + "px";
      keep[a[0]] = true;
    });
    Array.prototype.slice.call(layer.children).forEach(function (el) {
      if (!keep[el.getAttribute("data-fp")]) el.remove();
    });
  }

  function clear() {
    state.flashing = [];
    var layer = document.getElementById("attn-map-layer");
    if (layer) layer.remove();
    if (state.title !== null) { document.title = state.baseTitle; state.title = null; }
    state.ns = null;
    state.seen = null;
  }

  function tick() {
    var data = readJson("attn-data"), prefs = readJson("attn-prefs");
    if (!data || !prefs || !data.levels) { clear(); return; }
    var from = ring(data, prefs.level);
    if (from < 0) from = data.levels.length - 1;
    var fresh = state.ns !== data.ns || state.seen === null;
    var seen = {};
    var flashing = [];
    var top = 0;
    data.alerts.forEach(function (a) {
      var r = ring(data, a[1]);
      var before = fresh ? r : (state.seen[a[0]] === undefined ? -1 : state.seen[a[0]]);
      seen[a[0]] = Math.max(r, before);
      if (!a[2] && a[1] === data.top) top += 1;
      if (!a[2] && r >= from) flashing.push(a);
      if (!fresh && !a[2] && r >= from && before < from) {  // new at the level, or risen to it
        if (prefs.sound) sound();
        if (prefs.notify) notify(data, a);
      }
    });
    state.ns = data.ns;
    state.seen = seen;
    state.flashing = flashing;
    var title = (top > 0 ? "(" + top + ") " + data.top_label + " · " : "") + data.title;
    if (document.title !== title) document.title = title;
    state.title = title;
    var on = {};
    flashing.forEach(function (a) { on[a[0]] = true; });
    document.querySelectorAll(".alert-card").forEach(function (card) {
      card.classList.toggle("attn-flash", !!on[cardFp(card)]);
    });
    drawRings(flashing);
  }

  // desktop notifications are asked for only when the user presses the button (never on their own)
  document.addEventListener("click", function (e) {
    var btn = e.target && e.target.closest && e.target.closest("#attn-notify");
    if (btn && "Notification" in window && Notification.permission === "default") {
      Notification.requestPermission();
    }
  });

  setInterval(tick, 500);
})();
