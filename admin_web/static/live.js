// The dashboard's live feed: polls /api/live twice a second and inserts new
// events as text (never as HTML: names come from QR codes).
(function () {
  "use strict";
  var table = document.getElementById("live-events");
  if (!table) { return; }
  var body = table.querySelector("tbody");
  var cursor = table.dataset.cursor;
  var labels = JSON.parse(table.dataset.labels);
  var MAX_ROWS = 50;

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function addEvent(e) {
    var row = document.createElement("tr");
    row.className = e.decision + (e.clock_synced ? "" : " unsynced") + " fresh";
    var first = cell(row, "");
    var link = document.createElement("a");
    link.href = table.dataset.eventUrl.replace("EVENT_ID", encodeURIComponent(e.id));
    link.textContent = e.time;
    first.appendChild(link);
    if (!e.clock_synced) {
      var flag = document.createElement("span");
      flag.className = "flag";
      flag.title = labels.unsynced;
      flag.textContent = " ⚠";
      first.appendChild(flag);
    }
    cell(row, labels[e.decision] + (e.override ? " (" + labels.by_hand + ")" : ""));
    cell(row, labels[e.direction]);
    cell(row, e.name);
    cell(row, e.masked_id);
    cell(row, e.reason_text).title = e.reason;  // the code, for support
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
  }

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = String(value); }
  }

  // The kiosk's state as the page renders it: a camera unplugged while the
  // page is open shows as a fault within a poll, and clears the same way.
  var health = document.getElementById("health");
  var healthLabels = health ? JSON.parse(health.dataset.labels) : null;

  function showHealth(h) {
    var state = document.getElementById("health-state");
    if (!state || !healthLabels || !h) { return; }
    var fault = h.running ? (h.fault || "") : "";
    if (!h.running) {
      state.textContent = healthLabels.not_running;
    } else if (fault) {
      state.textContent = healthLabels.fault.replace("WHAT", healthLabels.parts[fault] || fault);
    } else {
      state.textContent = healthLabels.ready;
    }
    state.className = h.running && !fault ? "good" : "bad";
    state.dataset.fault = fault;
    var camera = document.getElementById("health-camera");
    if (camera && h.camera) {
      camera.textContent = h.camera + (h.camera_detail ? " (" + h.camera_detail + ")" : "");
      camera.className = h.camera_ok ? "good" : "bad";
    }
  }

  function poll() {
    fetch(table.dataset.url + "?after=" + encodeURIComponent(cursor), {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) {
        data.events.forEach(addEvent);
        cursor = data.cursor;
        var s = data.summary;
        setText("entries", s.entries);
        setText("exits", s.exits);
        setText("occupancy", s.occupancy);
        setText("refused", s.refused);
        showHealth(s.health);
      })
      .catch(function () { /* the next poll tries again */ })
      .finally(function () { window.setTimeout(poll, 500); });
  }
  window.setTimeout(poll, 500);
}());
