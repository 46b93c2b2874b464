// streamflow dashboard: live counts (polling, at most every 2 s), the chart, confirmations.
"use strict";
(function () {
  function fmt(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
  function duration(ms) {
    if (ms === null || ms === undefined) return "-";
    if (ms < 1000) return ms + "ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + "s";
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + "m " + String(sec).padStart(2, "0") + "s";
    var h = Math.floor(m / 60);
    return h < 48 ? h + "h " + String(m % 60).padStart(2, "0") + "m" : Math.floor(h / 24) + "d " + (h % 24) + "h";
  }
  var SVG = "http://www.w3.org/2000/svg";
  function drawChart(svg, completed, failed) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var n = completed.length, max = 1;
    for (var i = 0; i < n; i++) max = Math.max(max, completed[i], failed[i]);
    var w = 600 / n;
    for (var j = 0; j < n; j++) {
      [[completed[j], "#1a7f37", 0], [failed[j], "#cf222e", w / 2]].forEach(function (bar) {
        if (!bar[0]) return;
        var h = Math.max(1, 112 * bar[0] / max), r = document.createElementNS(SVG, "rect");
        r.setAttribute("x", j * w + bar[2]); r.setAttribute("width", Math.max(w / 2 - 1, 1));
        r.setAttribute("y", 120 - h); r.setAttribute("height", h); r.setAttribute("fill", bar[1]);
        var t = document.createElementNS(SVG, "title"); t.textContent = bar[0] + " jobs";
        r.appendChild(t); svg.appendChild(r);
      });
    }
    var label = document.getElementById("chart-max");
    if (label) label.textContent = "peak " + max + "/min";
  }
  function nums(text) { return text ? text.split(",").map(Number) : []; }
  function stateHtml(row) {
    var out = "";
    if (row.paused) out += '<span class="badge warn">paused</span>';
    if (row.limited_for_ms) out += '<span class="badge warn">rate-limited ' + duration(row.limited_for_ms) + "</span>";
    if (row.rate_limit) out += '<span class="badge muted">limit ' + row.rate_limit + "</span>";
    if (!row.paused && !row.limited_for_ms) out += '<span class="badge ok">running</span>';
    return out;
  }
  function apply(snap, live) {
    var names = snap.queues.map(function (r) { return r.name; }).join(",");
    if (names !== live.dataset.names) { window.location.reload(); return; }
    snap.queues.forEach(function (row) {
      document.querySelectorAll('[data-queue="' + CSS.escape(row.name) + '"]').forEach(function (scope) {
        var set = function (f, v) { scope.querySelectorAll('[data-f="' + f + '"]').forEach(function (el) { if (el.textContent !== v) el.textContent = v; }); };
        ["waiting", "active", "delayed", "dead", "consumers"].forEach(function (f) { set(f, fmt(row[f])); });
        set("oldest", duration(row.oldest_waiting_ms));
        scope.querySelectorAll('[data-f="state"]').forEach(function (el) { var h = stateHtml(row); if (el.innerHTML !== h) el.innerHTML = h; });
        scope.querySelectorAll('[data-f="levels"]').forEach(function (el) {
          var h = Object.keys(row.levels).map(function (l) { return '<span class="lvl">' + l + " <b>" + fmt(row.levels[l]) + "</b></span>"; }).join("");
          if (el.innerHTML !== h) el.innerHTML = h;
        });
      });
    });
    (snap.partitions || []).forEach(function (p) {
      document.querySelectorAll('#partitions tr[data-partition="' + p.partition + '"]').forEach(function (tr) {
        [["waiting", p.waiting], ["active", p.active], ["delayed", p.delayed], ["dead", p.dead], ["held", p.held], ["locked", p.locked_keys]].forEach(function (pair) {
          tr.querySelectorAll('[data-f="' + pair[0] + '"]').forEach(function (el) { var v = fmt(pair[1]); if (el.textContent !== v) el.textContent = v; });
        });
      });
    });
    var svg = document.getElementById("chart");
    if (svg) drawChart(svg, snap.chart.completed, snap.chart.failed);
    document.body.dataset.updated = String(snap.now_ms);
  }
  function poll(live, every) {
    fetch(live.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (r.status === 401) { window.location.reload(); throw new Error("login"); } return r.json(); })
      .then(function (snap) { apply(snap, live); })
      .catch(function () {})
      .finally(function () { setTimeout(function () { poll(live, every); }, every); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var svg = document.getElementById("chart");
    if (svg) drawChart(svg, nums(svg.dataset.completed), nums(svg.dataset.failed));
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) { if (!window.confirm(form.dataset.confirm)) ev.preventDefault(); });
    });
    var live = document.getElementById("live");
    var every = Math.min(Number(document.body.dataset.refreshMs) || 2000, 2000);
    if (live) setTimeout(function () { poll(live, every); }, every);
  });
})();
