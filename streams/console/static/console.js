// cityhub console: small behaviours on top of server-rendered pages. No inline scripts anywhere
// (the Content-Security-Policy forbids them); each behaviour finds its element by a data-
// attribute and does nothing on pages without one.
"use strict";

(function () {
  // Live observations of one device (Server-Sent Events): each new one is put first in the
  // list, which is an aria-live region, so a screen reader hears it too.
  function live(list) {
    if (!window.EventSource) { return; }
    var status = document.getElementById(list.getAttribute("data-live-status"));
    var max = parseInt(list.getAttribute("data-live-max") || "20", 10);
    var source = new EventSource(list.getAttribute("data-live"));
    source.addEventListener("observation", function (event) {
      var item = document.createElement("li");
      item.textContent = event.data;  // text, never HTML
      list.insertBefore(item, list.firstChild);
      while (list.children.length > max) { list.removeChild(list.lastChild); }
      var empty = document.getElementById(list.getAttribute("data-live-empty"));
      if (empty) { empty.hidden = true; }
    });
    source.addEventListener("status", function (event) {
      if (status) { status.textContent = event.data; }
    });
    // The server ended the stream for good (signed out, no longer allowed): no reconnecting.
    source.addEventListener("end", function (event) {
      source.close();
      if (status) { status.textContent = event.data; }
    });
    source.addEventListener("error", function () {
      if (status && source.readyState === EventSource.CLOSED) {
        status.textContent = status.getAttribute("data-closed") || "";
      }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var lists = document.querySelectorAll("[data-live]");
    for (var i = 0; i < lists.length; i++) { live(lists[i]); }
  });
})();
