// The gate screen: polls /display/state a few times a second and shows each
// decision for a few seconds, then the idle prompt (or the fault notice).
// Everything from the server goes in with textContent: names come from QR
// codes that anyone can print.
(function () {
  "use strict";
  var body = document.body;
  var stateUrl = body.dataset.stateUrl;
  var token = body.dataset.token || "";
  var POLL_MS = 400;
  var SHOW_MS = 5000;
  var MIN_SHOW_MS = 1500;
  var TIMEOUT_MS = 2500;
  var LONG_TEXT = 28;

  var cursor = null;
  var showing = false;
  var fault = false;
  var hideTimer = null;

  function byId(id) { return document.getElementById(id); }

  function setText(id, text) {
    var el = byId(id);
    el.textContent = text || "";
    el.classList.toggle("long", (text || "").length > LONG_TEXT);
  }

  function pollUrl() {
    var query = [];
    if (cursor !== null) { query.push("after=" + encodeURIComponent(cursor)); }
    if (token) { query.push("token=" + encodeURIComponent(token)); }
    return stateUrl + (query.length ? "?" + query.join("&") : "");
  }

  function rest() {
    showing = false;
    body.dataset.state = fault ? "fault" : "idle";
  }

  // The line under the name for an HC1: certificate's Latin name and date of
  // birth, made once (the page's markup stays that of every other kind).
  function identityLine() {
    var line = byId("identity");
    if (!line) {
      line = document.createElement("p");
      line.id = "identity";
      line.className = "name identity";
      line.hidden = true;
      byId("name").insertAdjacentElement("afterend", line);
    }
    return line;
  }

  function show(e) {
    var warned = e.decision === "allow" && e.warning;
    body.dataset.state = e.decision !== "allow" ? "deny" : (warned ? "warn" : "allow");
    body.dataset.direction = e.direction === "out" ? "out" : "in";
    setText("message-vi", e.message.vi);
    setText("message-en", e.message.en);
    // A deliberate exception to the masked name: for an HC1: certificate the
    // server sends the holder's full name, Latin name and date of birth
    // (dd/mm/yyyy), so the guard can compare them with an ID card. Every
    // other kind has no identity and keeps the masked name.
    // A denylist refusal shows no identity at all (the server sends none either).
    var anonymous = e.reason === "denylisted";
    var identity = anonymous ? null : (e.identity || null);
    var name = anonymous ? "" : (identity ? identity.name : e.masked_name);
    setText("name", name);
    byId("name").hidden = !name;
    var details = identity
      ? [identity.name_latin, identity.birth_date].filter(Boolean).join(" · ")
      : "";
    var line = identityLine();
    line.textContent = details;
    line.hidden = !details;
    byId("warning").hidden = !warned;
    setText("warning-vi", warned ? e.warning.vi : "");
    setText("warning-en", warned ? e.warning.en : "");
    showing = true;
    window.clearTimeout(hideTimer);
    // A decision first seen late (the screen was reloaded) is shown for what
    // is left of its time.
    var left = Math.max(MIN_SHOW_MS, SHOW_MS - (Number(e.age_s) || 0) * 1000);
    hideTimer = window.setTimeout(rest, left);
  }

  function showOccupancy(occupancy, capacity) {
    byId("occupancy").textContent = String(occupancy);
    byId("capacity").textContent = capacity ? " / " + String(capacity) : "";
  }

  function setOffline(offline) {
    byId("offline").hidden = !offline;
  }

  function poll() {
    var controller = new AbortController();
    var timeout = window.setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    fetch(pollUrl(), {credentials: "same-origin", cache: "no-store", signal: controller.signal})
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (data) {
        setOffline(false);
        cursor = data.cursor;
        fault = Boolean(data.fault);
        showOccupancy(data.occupancy, data.capacity);
        if (data.event) {
          show(data.event);
        } else if (!showing) {
          rest();
        }
      })
      .catch(function () { setOffline(true); })
      .finally(function () {
        window.clearTimeout(timeout);
        window.setTimeout(poll, POLL_MS);
      });
  }

  // A touchscreen at a gate: no context menu from a long press.
  document.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  poll();
}());
