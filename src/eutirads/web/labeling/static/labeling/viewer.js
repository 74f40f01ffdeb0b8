// The image view of the reading and adjudication screens, one copy for both: zoom (the
// caller's +/-/0 keys, the wheel, a two-finger pinch), pan (a left-button drag when zoomed,
// or two fingers moving), window/level (a right- or Shift-drag with a mouse, one finger on
// a touch screen: left-right contrast, up-down brightness). Only CSS transform and filter
// change, so the pixels a reader labels are never re-encoded.
(function () {
  "use strict";
  const MAX_ZOOM = 8;
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  // stage: the element that takes the pointer; images: [picture, overlays...] (the filter
  // goes on the picture only); options: brightness/contrast sliders (optional) and
  // onChange(view), called after every change.
  function attach(stage, images, options) {
    const opts = options || {};
    const sliders = { brightness: opts.brightness || null, contrast: opts.contrast || null };
    const range = (name, lo, hi) => sliders[name] ? [Number(sliders[name].min), Number(sliders[name].max)] : [lo, hi];
    const limits = { brightness: range("brightness", 40, 200), contrast: range("contrast", 40, 250) };
    const view = { zoom: 1, panX: 0, panY: 0, brightness: 100, contrast: 100 };

    function apply() {
      if (sliders.brightness) view.brightness = Number(sliders.brightness.value);
      if (sliders.contrast) view.contrast = Number(sliders.contrast.value);
      if (view.zoom === 1) { view.panX = 0; view.panY = 0; }
      const transform = "translate(" + view.panX + "px," + view.panY + "px) scale(" + view.zoom + ")";
      images.forEach((img) => { img.style.transform = transform; });
      images[0].style.filter = "brightness(" + view.brightness + "%) contrast(" + view.contrast + "%)";
      if (opts.onChange) opts.onChange(view);
    }
    function setLevel(name, value) {
      view[name] = Math.round(clamp(value, limits[name][0], limits[name][1]));
      if (sliders[name]) sliders[name].value = view[name];
    }
    function zoomBy(factor) { view.zoom = clamp(view.zoom * factor, 1, MAX_ZOOM); apply(); }
    function reset() {
      view.zoom = 1; setLevel("brightness", 100); setLevel("contrast", 100); apply();
    }

    // Every pointer down, by id; a gesture starts afresh whenever a finger comes or goes,
    // so lifting one finger of a pinch never makes the picture jump.
    const pointers = new Map();
    let gesture = null;
    function begin() {
      const points = Array.from(pointers.values());
      const base = { zoom: view.zoom, panX: view.panX, panY: view.panY,
                     brightness: view.brightness, contrast: view.contrast };
      if (points.length >= 2) {
        const [a, b] = points;
        gesture = Object.assign(base, { kind: "pinch", d: Math.hypot(a.x - b.x, a.y - b.y) || 1,
                                        x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });
      } else if (points.length === 1) {
        gesture = Object.assign(base, { kind: points[0].level ? "level" : "pan",
                                        x: points[0].x, y: points[0].y });
      } else {
        gesture = null;
      }
    }
    stage.addEventListener("pointerdown", (e) => {
      const level = e.pointerType === "touch" || e.button === 2 || e.shiftKey;
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY, level: level });
      if (stage.setPointerCapture) stage.setPointerCapture(e.pointerId);
      begin();
    });
    stage.addEventListener("pointermove", (e) => {
      const point = pointers.get(e.pointerId);
      if (!point || !gesture) return;
      point.x = e.clientX; point.y = e.clientY;
      const g = gesture;
      if (g.kind === "pinch") {
        const [a, b] = Array.from(pointers.values());
        view.zoom = clamp(g.zoom * Math.hypot(a.x - b.x, a.y - b.y) / g.d, 1, MAX_ZOOM);
        view.panX = g.panX + (a.x + b.x) / 2 - g.x; view.panY = g.panY + (a.y + b.y) / 2 - g.y;
      } else if (g.kind === "level") {
        setLevel("contrast", g.contrast + (e.clientX - g.x) / 2);
        setLevel("brightness", g.brightness - (e.clientY - g.y) / 2);
      } else if (view.zoom > 1) {
        view.panX = g.panX + e.clientX - g.x; view.panY = g.panY + e.clientY - g.y;
      } else {
        return;
      }
      apply();
    });
    const end = (e) => { if (pointers.delete(e.pointerId)) begin(); };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("wheel", (e) => { e.preventDefault(); zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15); }, { passive: false });
    stage.addEventListener("contextmenu", (e) => e.preventDefault());
    Object.values(sliders).forEach((s) => { if (s) s.addEventListener("input", apply); });
    apply();
    return { view: view, apply: apply, zoomBy: zoomBy, reset: reset };
  }

  window.EutiradsViewer = { attach: attach };
})();
