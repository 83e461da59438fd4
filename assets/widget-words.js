/* The widgets' own words in the page's language: Plotly's toolbar, the map's controls, number inputs' steppers,
 * the tables' paging. They come in English from their libraries; the shell hands the page the words it has for
 * them (#shell-widget-words: {English: translation}, from command/i18n.py `widget.*`, empty in English) and this
 * puts them in place of the English in tooltips and labels, and in the tables' paging texts. The English is kept
 * on the element (data-en-*) so a switch back to English restores it. */
(function () {
  "use strict";
  var ATTRS = ["title", "aria-label", "data-title", "placeholder"];
  var TEXT_IN = ".ag-paging-panel, .ag-overlay, .dash-dropdown-content";

  function words() {
    var el = document.getElementById("shell-widget-words");
    if (!el || !el.textContent) return {};
    try { return JSON.parse(el.textContent); } catch (e) { return {}; }
  }

  function attrs(table) {
    ATTRS.forEach(function (a) {
      document.querySelectorAll("[" + a + "]").forEach(function (e) {
        var keep = "data-en-" + a;
        var en = e.getAttribute(keep) || e.getAttribute(a);
        var want = table[en];
        if (want) {
          if (!e.hasAttribute(keep)) e.setAttribute(keep, en);
          if (e.getAttribute(a) !== want) e.setAttribute(a, want);
        } else if (e.hasAttribute(keep)) {  // back to English
          e.setAttribute(a, e.getAttribute(keep));
          e.removeAttribute(keep);
        }
      });
    });
  }

  function texts(table, swapped) {
    document.querySelectorAll(TEXT_IN).forEach(function (box) {
      var walk = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
      var node;
      while ((node = walk.nextNode())) {
        var raw = node.nodeValue;
        var en = swapped.get(node);
        var key = en !== undefined && raw === en.shown ? en.en : raw.trim();
        var want = table[key];
        if (want && raw.trim() !== want) {
          var shown = raw.replace(raw.trim(), want);
          swapped.set(node, {en: key, shown: shown});
          node.nodeValue = shown;
        } else if (!want && en !== undefined && raw === en.shown) {
          node.nodeValue = raw.replace(en.shown.trim(), en.en);
          swapped.delete(node);
        }
      }
    });
  }

  var swapped = new WeakMap();
  setInterval(function () {
    var table = words();
    attrs(table);
    texts(table, swapped);
  }, 400);
})();
