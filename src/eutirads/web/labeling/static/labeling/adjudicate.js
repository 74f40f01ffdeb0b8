// Adjudication: the reading screen's keys. 1-5 set the consensus, X excludes the image,
// +/-/0 and the wheel zoom, drag pans; keys never act inside a text box or on a slider.
(function () {
  "use strict";
  const img = document.getElementById("adjudicate-image");
  const form = document.getElementById("consensus-form");
  if (!img || !form) return;
  const view = { zoom: 1, x: 0, y: 0 };
  const apply = () => { img.style.transform = "translate(" + view.x + "px," + view.y + "px) scale(" + view.zoom + ")"; };
  const zoomBy = (f) => { view.zoom = Math.min(8, Math.max(1, view.zoom * f)); if (view.zoom === 1) { view.x = view.y = 0; } apply(); };
  img.parentElement.addEventListener("wheel", (e) => { e.preventDefault(); zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15); }, { passive: false });
  let drag = null;
  img.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - view.x, y: e.clientY - view.y }; img.setPointerCapture(e.pointerId); });
  img.addEventListener("pointermove", (e) => { if (drag && view.zoom > 1) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply(); } });
  img.addEventListener("pointerup", () => { drag = null; });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.matches("input, textarea, select")) return;
    const key = e.key.toLowerCase();
    const choice = /^[1-5]$/.test(key) ? key : (key === "x" ? form.dataset.excluded : null);
    if (choice) { form.querySelector('button[value="' + choice + '"]').click(); }
    else if (key === "+" || key === "=") { zoomBy(1.25); }
    else if (key === "-") { zoomBy(0.8); }
    else if (key === "0") { view.zoom = 1; view.x = view.y = 0; apply(); }
    else { return; }
    e.preventDefault();
  });
})();
