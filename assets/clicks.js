/* Callbacks the browser runs (layouts/access.py browser_callback declares them and their roles). */
window.dash_clientside = Object.assign({}, window.dash_clientside);
window.dash_clientside.ecd = Object.assign({}, window.dash_clientside.ecd, {
  /* A click on a button of a list the server draws again (the operator's alert cards, the exercise
   * page's drill rows), passed on to a store outside that list. A server callback listening on the
   * buttons themselves loses its answer when the list is redrawn while the answer is on its way: Dash
   * asks it again for the new set of buttons and drops the first answer (a Stop that never asks, a
   * dispatch that says nothing). This runs at once, in the browser; the server callbacks listen on the
   * store, which no redraw replaces. A redraw reports buttons never clicked: nothing to pass on. */
  relayClick: function () {
    var dc = window.dash_clientside;
    var hits = dc.callback_context.triggered.filter(function (t) { return t.value; });
    if (hits.length !== 1) { return dc.no_update; }
    var prop = hits[0].prop_id;
    try {
      return {id: JSON.parse(prop.slice(0, prop.lastIndexOf("}") + 1)), n: hits[0].value, at: Date.now()};
    } catch (e) {
      return dc.no_update;
    }
  }
});
