/* The staff live view: merges the state every server process publishes (usage/live.py) and renders it.
   No libraries; every value goes into the page as text, never as HTML. */
(function () {
  "use strict";

  var root = document.getElementById("live");
  if (!root) { return; }
  var wsPath = root.getAttribute("data-ws-path");
  var statusEl = document.getElementById("live-status");
  var processesEl = document.getElementById("live-processes");
  var flightBody = document.querySelector("#in-flight tbody");
  var finishedBody = document.querySelector("#finished tbody");
  var flightCount = document.getElementById("in-flight-count");

  var STALE_MS = 20000;      // a process not heard from for this long is dropped (they republish every 5 s)
  var FINISHED_SHOWN = 50;
  var processes = new Map(); // process id -> {state, offset (browser clock - process clock, s), seen (ms)}
  var socket = null;
  var attempts = 0;

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = "conn" + (cls ? " " + cls : "");
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + wsPath);
    socket.onopen = function () {
      attempts = 0;
      setStatus("live", "live");
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (!message || message.type !== "state" || !message.process) { return; }
      processes.set(message.process, {
        state: message,
        offset: Date.now() / 1000 - message.sent_at,
        seen: Date.now()
      });
      render();
    };
    socket.onclose = function () {
      attempts += 1;
      var delay = Math.min(10000, 500 * Math.pow(2, attempts - 1));
      setStatus(attempts > 3 ? "disconnected (are you still logged in as staff?) – retrying" : "reconnecting…", "down");
      setTimeout(connect, delay);
    };
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  function clock(epochSeconds) {
    // UTC unless the reader ticked "Local time" (times.js); the column header says which.
    return window.llmproxyTimes.format(epochSeconds, false, true);
  }

  function seconds(s) {
    if (s < 0) { s = 0; }
    if (s < 60) { return s.toFixed(1) + " s"; }
    return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  }

  function millis(ms) {
    if (ms === null || ms === undefined) { return ""; }
    return ms < 1000 ? ms + " ms" : seconds(ms / 1000);
  }

  function tokens(n) {
    return n === null || n === undefined ? "" : n.toLocaleString("en-US");  // 1,234 as the server writes it, any locale
  }

  function model(item) {
    return item.model || (item.operation === "count_tokens" ? "(count tokens)" : "");
  }

  function upstream(item) {
    if (!item.upstream) { return ""; }
    return item.upstream + (item.upstream_model ? "/" + item.upstream_model : "");
  }

  function shortProcess(id) {
    return processes.size > 1 ? id : "";
  }

  function empty(body, columns, text) {
    var row = document.createElement("tr");
    row.className = "empty-row";
    var td = cell(row, text);
    td.colSpan = columns;
    body.appendChild(row);
  }

  function render() {
    var flight = [];
    var finished = [];
    processes.forEach(function (entry, id) {
      entry.state.in_flight.forEach(function (item) { flight.push({item: item, offset: entry.offset, process: id}); });
      entry.state.recent.forEach(function (item) { finished.push({item: item, offset: entry.offset, process: id}); });
    });
    flight.sort(function (a, b) { return (a.item.started_at + a.offset) - (b.item.started_at + b.offset); });
    finished.sort(function (a, b) { return (b.item.finished_at + b.offset) - (a.item.finished_at + a.offset); });
    finished = finished.slice(0, FINISHED_SHOWN);

    flightBody.textContent = "";
    flight.forEach(function (entry) {
      var item = entry.item;
      var row = document.createElement("tr");
      row.setAttribute("data-id", item.id);
      cell(row, clock(item.started_at + entry.offset));
      cell(row, item.user);
      cell(row, model(item));
      cell(row, upstream(item));
      cell(row, item.dialect);
      cell(row, item.client);
      cell(row, item.stream ? "yes" : "no");
      cell(row, tokens(item.output_tokens), "num");
      var elapsed = cell(row, "", "num elapsed");
      elapsed.setAttribute("data-started", String(item.started_at + entry.offset));
      cell(row, shortProcess(entry.process), "proc");
      flightBody.appendChild(row);
    });
    if (!flight.length) { empty(flightBody, 10, "Nothing in flight."); }
    flightCount.textContent = String(flight.length);

    finishedBody.textContent = "";
    finished.forEach(function (entry) {
      var item = entry.item;
      var row = document.createElement("tr");
      row.setAttribute("data-id", item.id);
      cell(row, clock(item.finished_at + entry.offset));
      cell(row, item.user);
      cell(row, model(item));
      cell(row, upstream(item));
      cell(row, item.dialect);
      cell(row, item.client);
      cell(row, item.stream ? "yes" : "no");
      var outcome = cell(row, "");
      var badge = document.createElement("span");
      badge.className = "outcome outcome-" + item.outcome;
      badge.textContent = item.outcome + (item.status && item.status !== 200 ? " " + item.status : "");
      outcome.textContent = "";
      outcome.appendChild(badge);
      if (item.error) {
        var err = document.createElement("div");
        err.className = "err";
        err.textContent = item.error;
        outcome.appendChild(err);
      }
      cell(row, tokens(item.input_tokens), "num");
      cell(row, tokens(item.cache_read_tokens), "num");
      cell(row, tokens(item.output_tokens) + (item.usage_partial ? " (partial)" : ""), "num");
      cell(row, millis(item.ttft_ms), "num");
      cell(row, millis(item.duration_ms), "num");
      cell(row, shortProcess(entry.process), "proc");
      finishedBody.appendChild(row);
    });
    if (!finished.length) { empty(finishedBody, 14, "Nothing finished since the servers started."); }

    processesEl.textContent = processes.size === 1 ? "1 server process" : processes.size + " server processes";
    tick();
  }

  function tick() {
    var now = Date.now() / 1000;
    var cells = flightBody.querySelectorAll("td.elapsed");
    for (var i = 0; i < cells.length; i++) {
      cells[i].textContent = seconds(now - parseFloat(cells[i].getAttribute("data-started")));
    }
  }

  function dropStale() {
    var now = Date.now();
    var dropped = false;
    processes.forEach(function (entry, id) {
      if (now - entry.seen > STALE_MS) { processes.delete(id); dropped = true; }
    });
    if (dropped) { render(); }
  }

  document.addEventListener("llmproxy:times-changed", render);  // the rows shown, in the zone just chosen
  setInterval(tick, 200);
  setInterval(dropStale, 2000);
  connect();
})();
