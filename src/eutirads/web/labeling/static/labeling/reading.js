// The reading screen: keyboard-first blind labeling. Vanilla JS, no network but our own API.
(function () {
  "use strict";
  const api = JSON.parse(document.getElementById("labeling-api").textContent);
  const $ = (id) => document.getElementById(id);
  const img = $("image"), stage = $("stage"), statusEl = $("status");
  const choices = Array.from(document.querySelectorAll(".choice"));
  const state = { current: null, label: "", flagging: false, busy: false, history: [],
                  zoom: 1, panX: 0, panY: 0 };

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  const urlFor = (template, id) => template.replace("/0/", "/" + id + "/");

  async function call(url, method, body) {
    const response = await fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRFToken": csrfToken() },
      body: method === "POST" ? JSON.stringify(body || {}) : undefined,
    });
    if (response.status === 401 || response.redirected) { window.location.reload(); throw new Error("logged out"); }
    let data = {};
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) throw new Error(data.error || ("server error " + response.status));
    return data;
  }

  function say(text, kind) { statusEl.textContent = text || ""; statusEl.className = "status " + (kind || ""); }

  function choose(label) {
    state.label = label;
    state.flagging = false; $("flag-box").hidden = true;
    choices.forEach((b) => b.setAttribute("aria-pressed", b.dataset.label === label ? "true" : "false"));
    $("save").disabled = !state.current || !label;
  }

  function applyView() {
    img.style.filter = "brightness(" + $("brightness").value + "%) contrast(" + $("contrast").value + "%)";
    img.style.transform = "translate(" + state.panX + "px," + state.panY + "px) scale(" + state.zoom + ")";
    $("zoom-level").textContent = Math.round(state.zoom * 100) + "%";
  }
  function zoomBy(factor) { state.zoom = Math.min(8, Math.max(1, state.zoom * factor)); if (state.zoom === 1) { state.panX = state.panY = 0; } applyView(); }
  function resetView() { state.zoom = 1; state.panX = state.panY = 0; $("brightness").value = 100; $("contrast").value = 100; applyView(); }

  function show(data) {
    const current = data.current;
    state.current = current;
    const p = data.progress;
    if (p) {
      $("progress-text").textContent = p.done + " done · " + p.left + " left" + (p.skipped ? " · " + p.skipped + " skipped" : "");
      const total = p.done + p.left;
      $("progress-bar").style.width = (total ? Math.round(100 * p.done / total) : 100) + "%";
    }
    if (!current) {
      img.hidden = true; $("empty").hidden = false; $("position").textContent = "";
      choose(""); $("save").disabled = true; return;
    }
    $("empty").hidden = true;
    img.hidden = false;
    img.src = current.url;
    $("position").textContent = "image #" + current.position;
    const r = current.reading;
    $("comment").value = r ? r.comment : "";
    choose(r && r.label ? r.label : "");
    if (r && r.flagged) { state.flagging = true; $("flag-box").hidden = false; $("flag-reason").value = r.reason; }
    else { $("flag-reason").value = ""; }
    if (r) say("Your saved reading of this image; change it and save.", "");
    // Prefetch: the browser caches the next image so it appears at once after saving.
    if (data.prefetch) { const pre = new Image(); pre.src = data.prefetch.url; }
  }

  async function run(action) {
    if (state.busy) return;
    state.busy = true;
    try { await action(); } catch (e) { say(e.message, "err"); } finally { state.busy = false; }
  }

  function save() {
    if (!state.current) return;
    const flagged = state.flagging;
    const reason = $("flag-reason").value.trim();
    if (!flagged && !state.label) { say("Choose a category (1–5) first.", "err"); return; }
    if (flagged && !reason) { say("Give a reason for the flag.", "err"); $("flag-reason").focus(); return; }
    run(async () => {
      const id = state.current.id;
      const data = await call(urlFor(api.save, id), "POST",
        { label: flagged ? "" : state.label, flagged: flagged, reason: reason, comment: $("comment").value });
      state.history.push(id);
      document.activeElement && document.activeElement.blur();
      show(data);
      say(flagged ? "Flagged and saved." : "Saved.", "ok");
    });
  }
  function skip() {
    if (!state.current) return;
    run(async () => { show(await call(urlFor(api.skip, state.current.id), "POST")); say("Skipped.", ""); });
  }
  function back() {
    const id = state.history.pop();
    if (id === undefined) { say("No earlier image in this session.", ""); return; }
    run(async () => { const data = await call(urlFor(api.mine, id), "GET"); data.progress = null; show(data); });
  }
  function flag() {
    if (!state.current) return;
    choose(""); state.flagging = true; $("flag-box").hidden = false; $("save").disabled = false;
    $("flag-reason").focus();
  }

  choices.forEach((b) => b.addEventListener("click", () => choose(b.dataset.label)));
  $("save").addEventListener("click", save);
  $("skip").addEventListener("click", skip);
  $("flag").addEventListener("click", flag);
  $("back").addEventListener("click", back);
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("view-reset").addEventListener("click", resetView);
  $("brightness").addEventListener("input", applyView);
  $("contrast").addEventListener("input", applyView);
  stage.addEventListener("wheel", (e) => { e.preventDefault(); zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15); }, { passive: false });
  let drag = null;
  stage.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - state.panX, y: e.clientY - state.panY }; stage.setPointerCapture(e.pointerId); });
  stage.addEventListener("pointermove", (e) => { if (drag && state.zoom > 1) { state.panX = e.clientX - drag.x; state.panY = e.clientY - drag.y; applyView(); } });
  stage.addEventListener("pointerup", () => { drag = null; });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const typing = e.target.matches("input[type=text], textarea");
    if (typing) {
      if (e.key === "Escape") { e.target.blur(); e.preventDefault(); }
      else if (e.key === "Enter") { e.preventDefault(); save(); }
      return;
    }
    const key = e.key;
    if (/^[1-5]$/.test(key)) { choose(key); }
    else if (key === "Enter" || key === "ArrowRight") { save(); }
    else if (key === "ArrowLeft" || key === "Backspace") { back(); }
    else if (key === "s" || key === "S") { skip(); }
    else if (key === "f" || key === "F") { flag(); }
    else if (key === "c" || key === "C") { $("comment").focus(); }
    else if (key === "+" || key === "=") { zoomBy(1.25); }
    else if (key === "-") { zoomBy(0.8); }
    else if (key === "0") { resetView(); }
    else { return; }
    e.preventDefault();
  });

  run(async () => show(await call(api.next, "POST")));
  applyView();
})();
