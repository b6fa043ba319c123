// Progressive enhancement only: the dashboard's numbers refresh every 10 s; every page works without this.
"use strict";
(function () {
  var box = document.querySelector("[data-poll]");
  if (!box || !window.fetch) { return; }
  function refresh() {
    fetch(box.getAttribute("data-poll"), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (counts) {
        if (!counts) { return; }
        box.querySelectorAll("[data-count]").forEach(function (element) {
          var value = counts[element.getAttribute("data-count")];
          if (typeof value === "number") { element.textContent = String(value); }
        });
      })
      .catch(function () { /* offline for a moment: the next round tries again */ });
  }
  setInterval(refresh, 10000);
})();
