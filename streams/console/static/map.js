// cityhub console: the device map (Leaflet). Reads the points from the console itself; draws
// tiles only when a tile source is configured (data-tiles), else a plain background. Each
// marker has a shape and a letter besides its colour, and a title naming device and health.
"use strict";

(function () {
  function draw(element) {
    if (!window.L) { return; }
    var map = L.map(element, { zoomControl: true, attributionControl: true });
    var tiles = element.getAttribute("data-tiles");
    if (tiles) {
      L.tileLayer(tiles, { maxZoom: 19, attribution: element.getAttribute("data-attribution") || "" }).addTo(map);
    }
    map.setView([52.1, 5.3], 7);
    fetch(element.getAttribute("data-points"), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (doc) {
        var bounds = [];
        doc.points.forEach(function (point) {
          var icon = L.divIcon({ className: "marker " + point.state, html: "", iconSize: [22, 22] });
          var marker = L.marker([point.lat, point.lon], { icon: icon, title: point.label, alt: point.label, keyboard: true });
          marker.on("add", function () {
            var el = marker.getElement();
            if (el) { el.textContent = point.symbol; el.setAttribute("aria-label", point.label); }
          });
          marker.on("click", function () { window.location.href = point.href; });
          marker.on("keypress", function (event) {
            if (event.originalEvent && event.originalEvent.key === "Enter") { window.location.href = point.href; }
          });
          marker.addTo(map);
          bounds.push([point.lat, point.lon]);
        });
        if (bounds.length) { map.fitBounds(bounds, { padding: [30, 30], maxZoom: 16 }); }
        element.setAttribute("data-ready", String(doc.points.length));
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var element = document.getElementById("map");
    if (element) { draw(element); }
  });
})();
