// One rule for times on the staff and account pages: UTC, labelled, unless the reader ticks "Local time"
// (remembered in this browser). Times are <time data-epoch="…"> elements (data-date="1": with the date,
// data-seconds="1": with seconds); labels are .tz elements. live.js formats its own cells with `format`, and
// redraws them on the "llmproxy:times-changed" event the switch sends.
(function () {
  "use strict";
  var KEY = "llmproxy.localTime";

  function local() {
    try { return window.localStorage.getItem(KEY) === "1"; } catch (e) { return false; }
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function format(epochSeconds, withDate, withSeconds) {
    var d = new Date(epochSeconds * 1000);
    var l = local();
    var date = (l ? d.getFullYear() : d.getUTCFullYear()) + "-" + two((l ? d.getMonth() : d.getUTCMonth()) + 1) +
      "-" + two(l ? d.getDate() : d.getUTCDate());
    var time = two(l ? d.getHours() : d.getUTCHours()) + ":" + two(l ? d.getMinutes() : d.getUTCMinutes());
    if (withSeconds) { time += ":" + two(l ? d.getSeconds() : d.getUTCSeconds()); }
    return withDate ? date + " " + time : time;
  }

  function zone() { return local() ? "local" : "UTC"; }

  function apply() {
    document.querySelectorAll("time[data-epoch]").forEach(function (el) {
      el.textContent = format(Number(el.getAttribute("data-epoch")), el.getAttribute("data-date") === "1",
        el.getAttribute("data-seconds") === "1");
    });
    document.querySelectorAll(".tz").forEach(function (el) { el.textContent = zone(); });
    var box = document.getElementById("local-time");
    if (box) { box.checked = local(); }
  }

  function ready() {
    var box = document.getElementById("local-time");
    if (box) {
      box.addEventListener("change", function () {
        try { window.localStorage.setItem(KEY, box.checked ? "1" : "0"); } catch (e) { /* private mode: this page only */ }
        apply();
        // Pages that format times of their own (live.js) redraw them.
        document.dispatchEvent(new CustomEvent("llmproxy:times-changed"));
      });
    }
    apply();
  }

  window.llmproxyTimes = { format: format, zone: zone, apply: apply };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
})();
