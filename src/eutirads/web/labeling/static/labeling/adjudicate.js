// Adjudication: the reading screen's keys and view. 1-5 set the consensus, X excludes the
// image; +/-/0, the wheel and a pinch zoom, drag pans, right-drag (Shift-drag, one finger)
// sets window/level (viewer.js); keys never act inside a text box or on a slider.
(function () {
  "use strict";
  const img = document.getElementById("adjudicate-image");
  const form = document.getElementById("consensus-form");
  if (!img || !form) return;
  const viewer = window.EutiradsViewer.attach(img.parentElement, [img]);
  img.addEventListener("dragstart", (e) => e.preventDefault());
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.matches("input, textarea, select")) return;
    const key = e.key.toLowerCase();
    const choice = /^[1-5]$/.test(key) ? key : (key === "x" ? form.dataset.excluded : null);
    if (choice) { form.querySelector('button[value="' + choice + '"]').click(); }
    else if (key === "+" || key === "=") { viewer.zoomBy(1.25); }
    else if (key === "-") { viewer.zoomBy(0.8); }
    else if (key === "0") { viewer.reset(); }
    else { return; }
    e.preventDefault();
  });
})();
