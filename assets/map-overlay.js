/* The operator map's HTML overlay (layouts/operator/basemap.py, figure.py):
 * - district and landmark names from the figure's `layout.meta.labels`, drawn as HTML so the map
 *   needs no glyph server (offline) and Chinese names use the browser's own fonts;
 * - a scale bar (bottom left), in the page's language;
 * - the list and the map together: a click on an alert card centres the map on its subject, rings it
 *   (`#map-highlight`, class `map-highlight`, `data-subject`) and asks the server for its trend (store
 *   `map-focus`); a click on a station or incident of the map, or on a district name, scrolls to its
 *   card and marks it (class `card-selected`);
 * - the list's level and zone filters (`#map-filter-state`) dim the stations they leave out.
 * For other scripts: `window.ecdMap.locate(subject)` -> {lon, lat} or null, `ecdMap.highlight(subject)`,
 * `ecdMap.focus(subject)` (centre + ring + trend), `ecdMap.showCard(subject)`.
 */
(function () {
  "use strict";
  var state = {gd: null, map: null, box: null, focus: null};

  function graph() { return document.querySelector("#map-graph .js-plotly-plot"); }
  function mapOf(gd) {
    var sub = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
    return sub && sub.map ? sub.map : null;
  }
  function meta() { return (state.gd && state.gd.layout && state.gd.layout.meta) || {}; }

  function layer() {
    var box = state.map.getContainer();
    var el = box.querySelector(":scope > .map-overlay");
    if (!el) {
      el = document.createElement("div");
      el.className = "map-overlay";
      box.appendChild(el);
    }
    return el;
  }

  /* ---- labels ------------------------------------------------------------------------------ */
  function drawLabels() {
    var map = state.map, el = layer(), labels = meta().labels || [], zoom = map.getZoom();
    var key = JSON.stringify(labels.map(function (l) { return [l.id, l.text]; }));
    if (el.dataset.key !== key) {  // new labels (another language or namespace): make them again
      el.querySelectorAll(".map-label").forEach(function (n) { n.remove(); });
      labels.forEach(function (l) {
        var n = document.createElement("div");
        n.className = "map-label map-label-" + l.kind;
        n.textContent = l.text;
        n.dataset.id = l.id;
        if (l.kind === "district") {
          n.title = l.text;
          n.addEventListener("click", function () { showCard(l.id, true); });
        }
        el.appendChild(n);
      });
      el.dataset.key = key;
    }
    var nodes = el.querySelectorAll(".map-label");
    for (var i = 0; i < nodes.length && i < labels.length; i++) {
      var l = labels[i], n = nodes[i];
      if (l.minzoom && zoom < l.minzoom) { n.style.display = "none"; continue; }
      var p = map.project([l.lon, l.lat]);
      n.style.display = "";
      n.style.transform = "translate(" + Math.round(p.x) + "px," + Math.round(p.y) + "px)";
    }
  }

  /* ---- scale bar -------------------------------------------------------------------------- */
  function drawScale() {
    var map = state.map, el = layer();
    var bar = el.querySelector(".map-scale");
    if (!bar) {
      bar = document.createElement("div");
      bar.className = "map-scale";
      bar.id = "map-scale";
      el.appendChild(bar);
    }
    var c = map.getCenter(), zoom = map.getZoom();
    var mPerPx = 40075016.686 * Math.cos(c.lat * Math.PI / 180) / (512 * Math.pow(2, zoom));
    var max = mPerPx * 120, step = Math.pow(10, Math.floor(Math.log10(max))), d = step;
    [5, 2, 1].some(function (k) { if (k * step <= max) { d = k * step; return true; } return false; });
    var zh = meta().lang === "zh";
    bar.style.width = Math.round(d / mPerPx) + "px";
    bar.textContent = d >= 1000 ? (d / 1000) + (zh ? " 公里" : " km") : d + (zh ? " 米" : " m");
  }

  /* ---- where a subject is ----------------------------------------------------------------- */
  function locate(subject) {
    var gd = state.gd || graph();
    if (!gd || !gd.data || !subject) return null;
    for (var t = 0; t < 2 && t < gd.data.length; t++) {  // stations, then incidents
      var tr = gd.data[t], cd = tr.customdata || [];
      for (var i = 0; i < cd.length; i++) {
        if (cd[i] && cd[i][0] === subject) return {lon: tr.lon[i], lat: tr.lat[i]};
      }
    }
    var labels = (gd.layout && gd.layout.meta && gd.layout.meta.labels) || [];
    for (var k = 0; k < labels.length; k++) {
      if (labels[k].id === subject) return {lon: labels[k].lon, lat: labels[k].lat};
    }
    return null;
  }

  function drawHighlight() {
    var el = layer(), ring = document.getElementById("map-highlight");
    var at = state.focus && locate(state.focus);
    if (!at) { if (ring) ring.remove(); return; }
    if (!ring) {
      ring = document.createElement("div");
      ring.id = "map-highlight";
      ring.className = "map-highlight";
      el.appendChild(ring);
    }
    ring.dataset.subject = state.focus;
    var p = state.map.project([at.lon, at.lat]);
    ring.style.transform = "translate(" + Math.round(p.x) + "px," + Math.round(p.y) + "px)";
  }

  function draw() {
    if (!state.map) return;
    drawLabels();
    drawScale();
    drawHighlight();
  }

  /* ---- the list's level and zone filters, on the map: the stations they leave out are dimmed ---- */
  var DIM = 0.15;
  function applyFilter() {
    var gd = state.gd, el = document.getElementById("map-filter-state");
    if (!gd || !gd.data || !gd.data[0] || !window.Plotly) return;
    var f = el && el.dataset.filter ? JSON.parse(el.dataset.filter) : null;
    var op = gd.data[0].marker && gd.data[0].marker.opacity;
    if (!f) {
      if (Array.isArray(op)) window.Plotly.restyle(gd, {"marker.opacity": 1}, [0]);
      return;
    }
    var cd = gd.data[0].customdata || [];
    var want = cd.map(function (c) {
      var lv = (c && c[4]) || "", zone = (c && c[2]) || "";
      var ok = (!f.levels || f.levels.indexOf(lv) >= 0) && (!f.zones.length || f.zones.indexOf(zone) >= 0);
      return ok ? 1 : DIM;
    });
    if (Array.isArray(op) && op.length === want.length && op.every(function (v, i) { return v === want[i]; })) return;
    window.Plotly.restyle(gd, {"marker.opacity": [want]}, [0]);
  }

  /* ---- the list and the map ---------------------------------------------------------------- */
  function anchorOf(subject) {
    var all = document.querySelectorAll(".alert-card .card-anchor");
    for (var i = 0; i < all.length; i++) {
      if (all[i].dataset.subject === subject) return all[i];
    }
    for (var j = 0; j < all.length; j++) {  // a district: the first card in it
      if (all[j].dataset.zone === subject) return all[j];
    }
    return null;
  }

  function showCard(subject, ring) {
    var a = anchorOf(subject);
    document.querySelectorAll(".alert-card.card-selected").forEach(function (c) { c.classList.remove("card-selected"); });
    if (ring) { state.focus = subject; drawHighlight(); }
    if (!a) return false;
    var card = a.closest(".alert-card");
    card.classList.add("card-selected");
    card.scrollIntoView({block: "center", behavior: "smooth"});
    return true;
  }

  function highlight(subject) {
    state.focus = subject;
    if (state.map) drawHighlight();
  }

  function focus(subject) {
    var gd = state.gd || graph(), at = locate(subject);
    highlight(subject);
    if (gd && at && window.Plotly) {
      var zoom = Math.max((state.map && state.map.getZoom()) || 12, 13);
      window.Plotly.relayout(gd, {"map.center": {lon: at.lon, lat: at.lat}, "map.zoom": zoom});
    }
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("map-focus", {data: {subject: subject, at: Date.now()}});
    }
  }

  document.addEventListener("click", function (ev) {
    var card = ev.target.closest && ev.target.closest(".alert-card");
    if (!card || ev.target.closest("button, a, input, textarea, select, label")) return;
    var a = card.querySelector(".card-anchor");
    if (!a) return;
    document.querySelectorAll(".alert-card.card-selected").forEach(function (c) { c.classList.remove("card-selected"); });
    card.classList.add("card-selected");
    focus(a.dataset.subject);
  });

  function onMapClick(ev) {
    var pt = ev && ev.points && ev.points[0];
    if (!pt || (pt.curveNumber !== 0 && pt.curveNumber !== 1) || !pt.customdata) return;
    showCard(pt.customdata[0], true);
  }

  function attach() {
    var gd = graph(), map = mapOf(gd);
    if (!gd || !map) return;
    if (state.gd === gd) applyFilter();  // after a new filter, or a new figure that dropped the dimming
    if (gd !== state.gd) {
      state.gd = gd;
      gd.on("plotly_afterplot", draw);
      gd.on("plotly_click", onMapClick);
    }
    if (map !== state.map) {
      state.map = map;
      map.on("move", draw);
      map.on("resize", draw);
      draw();
    }
  }
  setInterval(attach, 400);  // the graph comes and goes with the page; attaching twice is avoided above

  window.ecdMap = {locate: locate, highlight: highlight, focus: focus, showCard: function (s) { return showCard(s, true); }};
})();
