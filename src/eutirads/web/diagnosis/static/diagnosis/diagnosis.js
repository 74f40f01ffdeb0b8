// Classify page: preview the chosen image, draw an optional nodule box (mouse, pen or touch
// through pointer events), heatmap opacity, and re-using the result's image for a box.
// Vanilla JS, no external code.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // gettext/interpolate come from Django's JavaScript catalogue (jsi18n), when loaded.
  const gettext = window.gettext || ((s) => s);
  const fmt = (s, obj) => (window.interpolate ? window.interpolate(s, obj, true)
                                              : s.replace(/%\((\w+)\)s/g, (m, k) => obj[k]));

  // Heatmap opacity and the box marker on a result.
  const heat = $("dx-heat"), opacity = $("dx-opacity");
  if (heat && opacity) {
    const apply = () => { heat.style.opacity = String(opacity.value / 100); };
    opacity.addEventListener("input", apply);
    apply();
  }
  // Bar widths from data attributes (CSSOM, which the CSP allows; inline styles it does not).
  document.querySelectorAll(".dx-bar-fill[data-percent]").forEach((bar) => {
    bar.style.width = Math.max(0, Math.min(100, Number(bar.dataset.percent))) + "%";
  });
  document.querySelectorAll(".dx-boxmark").forEach((mark) => {
    const d = mark.dataset, w = Number(d.w), h = Number(d.h);
    mark.style.left = (100 * d.x0 / w) + "%";
    mark.style.top = (100 * d.y0 / h) + "%";
    mark.style.width = (100 * (d.x1 - d.x0) / w) + "%";
    mark.style.height = (100 * (d.y1 - d.y0) / h) + "%";
  });

  const file = $("dx-file"), canvas = $("dx-canvas"), stage = $("dx-stage");
  if (!file || !canvas) return;
  const ctx = canvas.getContext("2d");
  const fields = ["x0", "y0", "x1", "y1"].map((k) => $("dx-" + k));
  const boxText = $("dx-boxtext"), hint = $("dx-hint");
  let image = null, box = null, start = null;

  function setBox(b) {
    box = b;
    fields.forEach((f, i) => { f.value = b ? String([b.x0, b.y0, b.x1, b.y1][i]) : ""; });
    boxText.textContent = b ? fmt(gettext("Box: %(x0)s, %(y0)s – %(x1)s, %(y1)s (%(w)s×%(h)s px)"),
                                  { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1, w: b.x1 - b.x0, h: b.y1 - b.y0 })
                            : gettext("No box: the whole image is classified.");
    draw();
  }

  function draw() {
    if (!image) return;
    ctx.drawImage(image, 0, 0);
    if (!box) return;
    ctx.lineWidth = Math.max(2, canvas.width / 300);
    ctx.strokeStyle = "#38bdf8";
    ctx.setLineDash([ctx.lineWidth * 4, ctx.lineWidth * 2]);
    ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  }

  function toPixels(event) {
    const rect = canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) * canvas.width / rect.width;
    const y = (event.clientY - rect.top) * canvas.height / rect.height;
    return { x: Math.round(Math.min(Math.max(x, 0), canvas.width)),
             y: Math.round(Math.min(Math.max(y, 0), canvas.height)) };
  }

  function boxFrom(a, b) {
    return { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!image) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    start = toPixels(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!start) return;
    box = boxFrom(start, toPixels(event));
    draw();
  });
  const finish = (event) => {
    if (!start) return;
    const b = boxFrom(start, toPixels(event));
    start = null;
    setBox(b.x1 - b.x0 >= 4 && b.y1 - b.y0 >= 4 ? b : null);
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", () => { start = null; setBox(null); });
  $("dx-clearbox").addEventListener("click", () => setBox(null));

  function showPreview(blob, initialBox) {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => {
      image = img;
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      stage.hidden = false;
      hint.textContent = initialBox
        ? gettext("The box from the last result is shown: drag to draw your own (it replaces it).")
        : gettext("Drag on the image to draw a box around the nodule (optional).");
      setBox(initialBox || null);
      URL.revokeObjectURL(url);
    };
    img.onerror = () => {
      image = null;
      stage.hidden = true;
      hint.textContent = gettext("No preview for this file (DICOM, or not an image the browser shows). Classify it first, then draw a box on the result.");
      URL.revokeObjectURL(url);
    };
    img.src = url;
  }

  file.addEventListener("change", () => {
    setBox(null);
    const chosen = file.files && file.files[0];
    if (!chosen) { stage.hidden = true; image = null; return; }
    showPreview(chosen);
  });

  // "Draw a box on this image" / "Edit the model's box": put the result's (re-encoded)
  // image back into the form, with the result's box (the localiser's, or the drawn one)
  // ready to keep or redraw.
  const reuse = $("dx-reuse"), result = $("dx-result");
  if (reuse && result && result.dataset.image) {
    reuse.addEventListener("click", async () => {
      const blob = await (await fetch(result.dataset.image)).blob();
      const transfer = new DataTransfer();
      transfer.items.add(new File([blob], "image.png", { type: "image/png" }));
      file.files = transfer.files;
      let initial = null;
      if (result.dataset.box) {
        const [x0, y0, x1, y1] = result.dataset.box.split(",").map(Number);
        initial = { x0, y0, x1, y1 };
      }
      showPreview(blob, initial);
      $("dx-form").scrollIntoView({ behavior: "smooth" });
    });
  }
})();
