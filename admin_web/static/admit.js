// Admit once: follows a request until the gate has carried it out or it has
// expired. The status text comes from the server and is set as text.
(function () {
  "use strict";
  var el = document.getElementById("admit-status");
  if (!el) { return; }
  var POLL_MS = 1000;

  function show(data) {
    el.textContent = data.text;
    el.dataset.status = data.status;
    el.className = "admit-status " + data.status;
  }

  function poll() {
    if (el.dataset.status !== "pending") { return; }
    fetch(el.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.status === 404) {
          el.dataset.status = "gone";  // logged out or not ours: stop asking
        }
        if (!r.ok) { throw new Error(r.status); }
        return r.json();
      })
      .then(show)
      .catch(function () { /* the next poll tries again */ })
      .finally(function () {
        if (el.dataset.status === "pending") { window.setTimeout(poll, POLL_MS); }
      });
  }
  window.setTimeout(poll, POLL_MS);
}());
