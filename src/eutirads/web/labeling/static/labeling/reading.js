// The reading screen: keyboard-first blind labeling. Vanilla JS, no network but our own API.
// Descriptor mode: the reader sets the five descriptors; the category is the guideline
// rule's (rule.js, from the table eutirads.categories exports), shown live; the server
// recomputes it on save. Category mode: the reader picks the category.
(function () {
  "use strict";
  const api = JSON.parse(document.getElementById("labeling-api").textContent);
  const rule = JSON.parse(document.getElementById("labeling-rule").textContent);
  // gettext/interpolate come from Django's JavaScript catalogue (jsi18n).
  const gettext = window.gettext || ((s) => s);
  const fmt = (s, obj) => (window.interpolate ? window.interpolate(s, obj, true)
                                              : s.replace(/%\((\w+)\)s/g, (m, k) => obj[k]));
  const lang = document.documentElement.lang || "en";
  const number = new Intl.NumberFormat(lang);
  const $ = (id) => document.getElementById(id);
  const img = $("image"), overlayImg = $("overlay"), stage = $("stage"), statusEl = $("status");
  const descriptorMode = api.mode === "descriptors";
  const groups = Array.from(document.querySelectorAll("fieldset.descriptor"));
  const names = groups.map((g) => g.dataset.descriptor);
  const choices = Array.from(document.querySelectorAll(".choice"));
  const state = { current: null, ready: false, label: "", flagging: false, busy: false,
                  history: [], showOverlay: true,
                  values: {}, nodule: true, active: 0, override: "", overriding: false };
  const blobs = new Map();  // image url -> Promise of a blob: URL (prefetch, never the HTTP cache)

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
    if (response.status === 401 || response.redirected) { window.location.reload(); throw new Error(gettext("logged out")); }
    let data = {};
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) throw new Error(data.error || fmt(gettext("server error %(status)s"), { status: response.status }));
    return data;
  }

  // Patient images are sent with Cache-Control: no-store, so the prefetch keeps the bytes
  // in a blob: URL of this page instead of the browser's cache.
  // The promise resolves once the picture is decoded too, so showing a prefetched image
  // after a save costs no decoding.
  function blobUrl(url) {
    if (!blobs.has(url)) {
      const p = fetch(url, { credentials: "same-origin" }).then((r) => {
        if (!r.ok) throw new Error(fmt(gettext("image not available (%(status)s)"), { status: r.status }));
        return r.blob();
      }).then((b) => {
        const u = URL.createObjectURL(b);
        const probe = new Image();
        probe.src = u;
        return probe.decode().then(() => u);
      });
      p.catch(() => blobs.delete(url));
      blobs.set(url, p);
    }
    return blobs.get(url);
  }
  function forget(keep) {
    for (const [url, p] of blobs) {
      if (keep.indexOf(url) < 0) { blobs.delete(url); p.then((u) => URL.revokeObjectURL(u), () => {}); }
    }
  }

  function say(text, kind) { statusEl.textContent = text || ""; statusEl.className = "status " + (kind || ""); }

  // ---- the verdict ----------------------------------------------------------------------
  function computed() {
    if (!descriptorMode) return null;
    return window.EutiradsRule.evaluate(rule, state.values, state.nodule);
  }
  function currentLabel() {
    if (state.flagging) return "";
    if (!descriptorMode) return state.label;
    if (state.override) return state.override;
    const c = computed();
    return c === null ? "" : String(c);
  }
  function refresh() {
    if (descriptorMode) {
      document.querySelectorAll("button.value[data-descriptor]").forEach((b) => {
        b.setAttribute("aria-pressed", state.nodule && state.values[b.dataset.descriptor] === b.dataset.value ? "true" : "false");
      });
      groups.forEach((g, i) => { g.classList.toggle("active", state.nodule && i === state.active); g.disabled = !state.nodule; });
      $("no-nodule").setAttribute("aria-pressed", state.nodule ? "false" : "true");
      document.querySelectorAll("button.override").forEach((b) => b.setAttribute("aria-pressed", b.dataset.label === state.override ? "true" : "false"));
      $("override-box").hidden = !state.overriding;
      const c = computed();
      const chip = $("computed-chip");
      if (c !== null) {
        const shown = state.override || String(c);
        chip.textContent = shown;
        chip.className = "label-chip l" + shown;
        $("computed-name").textContent = "EU-TIRADS " + shown + " · " + (api.categories[shown] || "") +
          (state.override ? " (" + fmt(gettext("rule: %(n)s"), { n: c }) + ")" : "");
        $("rule-path").textContent = window.EutiradsRule.path(rule, state.values, state.nodule, {
          words: api.values, high_risk: api.high_risk, no_nodule: gettext("no nodule"), arrow: " → " });
      } else {
        chip.textContent = "–"; chip.className = "label-chip";
        $("computed-name").textContent = gettext("Set the five descriptors");
        $("rule-path").textContent = "";
      }
    } else {
      choices.forEach((b) => b.setAttribute("aria-pressed", b.dataset.label === state.label ? "true" : "false"));
    }
    $("save").disabled = !state.current || !state.ready || !(state.flagging || currentLabel());
  }
  function setValue(name, value) {
    if (!state.ready) return;  // nothing is set on an image not yet on screen
    state.values[name] = value; state.nodule = true; state.flagging = false; $("flag-box").hidden = true;
    const next = names.findIndex((n, i) => i > names.indexOf(name) && !state.values[n]);
    state.active = next >= 0 ? next : Math.min(names.indexOf(name) + 1, names.length - 1);
    refresh();
  }
  function digit(key) {
    if (!state.ready) return;
    if (!descriptorMode) { state.label = key; state.flagging = false; $("flag-box").hidden = true; refresh(); return; }
    if (state.overriding) {
      state.override = key; refresh(); $("override-reason").focus(); return;
    }
    const name = names[state.active];
    const button = groups[state.active].querySelectorAll("button.value")[Number(key) - 1];
    if (button) setValue(name, button.dataset.value);
  }
  function resetVerdict(r) {
    state.values = {}; state.nodule = true; state.active = 0; state.override = ""; state.overriding = false;
    state.label = ""; state.flagging = false;
    $("flag-box").hidden = true; $("flag-reason").value = "";
    if (descriptorMode) { $("override-reason").value = ""; $("diameter").value = ""; }
    $("comment").value = r ? r.comment : "";
    if (!r) return;
    if (r.flagged) { state.flagging = true; $("flag-box").hidden = false; $("flag-reason").value = r.reason; return; }
    if (!descriptorMode) { state.label = r.label; return; }
    state.values = Object.assign({}, r.descriptors || {});
    state.nodule = r.nodule !== false;
    if (r.rule_label && r.label !== r.rule_label) {
      state.override = r.label; state.overriding = true; $("override-reason").value = r.override_reason || "";
    }
    if (r.diameter_mm) $("diameter").value = r.diameter_mm;
  }

  // ---- the view (viewer.js: zoom, pan, pinch, window/level) ------------------------------
  const viewer = window.EutiradsViewer.attach(stage, [img, overlayImg], {
    brightness: $("brightness"), contrast: $("contrast"),
    onChange: (v) => { $("zoom-level").textContent = number.format(Math.round(v.zoom * 100)) + "%"; } });
  const zoomBy = viewer.zoomBy, resetView = viewer.reset;
  function toggleOverlay() {
    state.showOverlay = !state.showOverlay;
    $("overlay-toggle").setAttribute("aria-pressed", state.showOverlay ? "true" : "false");
    overlayImg.hidden = !(state.showOverlay && state.ready && overlayImg.dataset.for === String(state.current && state.current.id));
  }

  function showProgress(p) {
    if (!p) return;
    let text = fmt(gettext("%(done)s done · %(left)s left"), { done: number.format(p.done), left: number.format(p.left) });
    if (p.skipped) text += " · " + fmt(gettext("%(n)s skipped"), { n: number.format(p.skipped) });
    $("progress-text").textContent = text;
    const total = p.done + p.left;
    $("progress-bar").style.width = (total ? Math.round(100 * p.done / total) : 100) + "%";
  }

  // The next image is shown only once decoded: until then the old one is hidden, the
  // position is blank and saving is off, so a label never goes to an image not seen.
  let showing = 0;
  async function show(data) {
    const current = data.current;
    const ticket = ++showing;
    state.current = current; state.ready = false;
    showProgress(data.progress);
    img.hidden = true; overlayImg.hidden = true; $("position").textContent = "";
    resetVerdict(current && current.reading);
    refresh();
    if (!current) { $("empty").hidden = false; $("loading").hidden = true; forget([]); return; }
    $("empty").hidden = true; $("loading").hidden = false;
    const keep = [current.url].concat(data.prefetch ? [data.prefetch.url] : []);
    forget(keep);
    if (data.prefetch) blobUrl(data.prefetch.url);
    const src = await blobUrl(current.url);  // fetched and decoded
    if (ticket !== showing) return;  // a newer image was asked for meanwhile
    img.src = src;
    await img.decode().catch(() => {});
    if (ticket !== showing) return;
    img.hidden = false; $("loading").hidden = true;
    $("position").textContent = fmt(gettext("image #%(n)s"), { n: current.position });
    state.ready = true;
    refresh();
    if (current.reading) say(gettext("Your saved reading of this image; change it and save."), "");
    overlayImg.dataset.for = "";
    if (current.overlay) {
      fetch(current.overlay, { credentials: "same-origin" }).then((r) => r.ok ? r.blob() : null).then((b) => {
        if (!b || ticket !== showing) return;
        if (overlayImg.src.startsWith("blob:")) URL.revokeObjectURL(overlayImg.src);
        overlayImg.src = URL.createObjectURL(b);
        overlayImg.dataset.for = String(current.id);
        overlayImg.hidden = !state.showOverlay;
      }).catch(() => {});
    }
  }

  async function run(action) {
    if (state.busy) return;
    state.busy = true;
    try { await action(); } catch (e) { say(e.message, "err"); } finally { state.busy = false; }
  }

  function verdict() {
    const body = { flagged: state.flagging, reason: $("flag-reason").value.trim(), comment: $("comment").value };
    if (state.flagging) return body;
    if (!descriptorMode) { body.label = state.label; return body; }
    body.nodule = state.nodule;
    if (state.nodule) names.forEach((n) => { body[n] = state.values[n] || ""; });
    const d = $("diameter").value.trim();
    if (d) body.diameter_mm = d;
    if (state.override) { body.override = state.override; body.override_reason = $("override-reason").value.trim(); }
    return body;
  }

  function save() {
    if (!state.current || !state.ready) return;
    const body = verdict();
    if (state.flagging && !body.reason) { say(gettext("Give a reason for the flag."), "err"); $("flag-reason").focus(); return; }
    if (!state.flagging && !currentLabel()) {
      say(descriptorMode ? gettext("Set every descriptor first (or N: no nodule).") : gettext("Choose a category (1–5) first."), "err");
      return;
    }
    if (state.override && !body.override_reason) { say(gettext("Give a reason for the override."), "err"); $("override-reason").focus(); return; }
    run(async () => {
      const id = state.current.id;
      const flagged = state.flagging;
      state.ready = false; refresh();
      let data;
      try { data = await call(urlFor(api.save, id), "POST", body); }
      catch (e) { state.ready = true; refresh(); throw e; }
      state.history.push(id);
      if (document.activeElement) document.activeElement.blur();
      say(flagged ? gettext("Flagged and saved.") : gettext("Saved."), "ok");
      await show(data);
    });
  }
  function skip() {
    if (!state.current) return;
    run(async () => { const data = await call(urlFor(api.skip, state.current.id), "POST"); say(gettext("Skipped."), ""); await show(data); });
  }
  function back() {
    const id = state.history.pop();
    if (id === undefined) { say(gettext("No earlier image in this session."), ""); return; }
    run(async () => { const data = await call(urlFor(api.mine, id), "GET"); data.progress = null; await show(data); });
  }
  function flag() {
    if (!state.current) return;
    state.flagging = true; $("flag-box").hidden = false; refresh();
    $("flag-reason").focus();
  }
  function toggleHelp(open) { $("help").hidden = open === undefined ? !$("help").hidden : !open; }

  // ---- wiring -----------------------------------------------------------------------------
  choices.forEach((b) => b.addEventListener("click", () => digit(b.dataset.label)));
  document.querySelectorAll("button.value[data-descriptor]").forEach((b) =>
    b.addEventListener("click", () => { setValue(b.dataset.descriptor, b.dataset.value); b.blur(); }));
  if (descriptorMode) {
    $("no-nodule").addEventListener("click", () => { state.nodule = !state.nodule; refresh(); });
    document.querySelectorAll("button.override").forEach((b) =>
      b.addEventListener("click", () => { state.override = b.dataset.label; refresh(); $("override-reason").focus(); }));
  }
  $("save").addEventListener("click", save);
  $("skip").addEventListener("click", skip);
  $("flag").addEventListener("click", flag);
  $("back").addEventListener("click", back);
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("view-reset").addEventListener("click", resetView);
  $("overlay-toggle").addEventListener("click", toggleOverlay);
  $("help-open").addEventListener("click", () => toggleHelp());
  $("help").addEventListener("click", () => toggleHelp(false));

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    // A focused slider keeps its own keys (arrows move it); nothing else happens.
    if (target.matches("input[type=range]")) {
      if (e.key === "Escape") { target.blur(); e.preventDefault(); }
      return;
    }
    if (target.matches("input[type=text], input[type=number], textarea")) {
      if (e.key === "Escape") { target.blur(); e.preventDefault(); }
      else if (e.key === "Enter") { e.preventDefault(); target.blur(); save(); }
      return;
    }
    const key = e.key;
    if (!$("help").hidden) { if (key === "Escape" || key === "?") { toggleHelp(false); e.preventDefault(); } return; }
    const groupKey = descriptorMode ? groups.findIndex((g) => g.querySelector("legend kbd").textContent.toLowerCase() === key.toLowerCase()) : -1;
    if (/^[1-5]$/.test(key)) { digit(key); }
    else if (groupKey >= 0) { state.active = groupKey; state.nodule = true; refresh(); }
    else if (descriptorMode && key === "ArrowDown") { state.active = Math.min(state.active + 1, names.length - 1); refresh(); }
    else if (descriptorMode && key === "ArrowUp") { state.active = Math.max(state.active - 1, 0); refresh(); }
    else if (descriptorMode && (key === "n" || key === "N")) { state.nodule = !state.nodule; refresh(); }
    else if (descriptorMode && (key === "d" || key === "D")) { $("diameter").focus(); }
    else if (descriptorMode && (key === "o" || key === "O")) { state.overriding = !state.overriding; if (!state.overriding) state.override = ""; refresh(); }
    else if (key === "Enter" || key === "ArrowRight") { save(); }
    else if (key === "ArrowLeft" || key === "Backspace") { back(); }
    else if (key === "s" || key === "S") { skip(); }
    else if (key === "f" || key === "F") { flag(); }
    else if (key === "c" || key === "C") { $("comment").focus(); }
    else if (key === "b" || key === "B") { toggleOverlay(); }
    else if (key === "?") { toggleHelp(true); }
    else if (key === "+" || key === "=") { zoomBy(1.25); }
    else if (key === "-") { zoomBy(0.8); }
    else if (key === "0") { resetView(); }
    else if (key === "Escape") { if (state.overriding) { state.overriding = false; state.override = ""; refresh(); } }
    else { return; }
    e.preventDefault();
  });

  // From "my readings": ?image=ID reopens one of the reader's own saved readings first.
  const reopen = new URLSearchParams(window.location.search).get("image");
  run(async () => {
    if (reopen && /^\d+$/.test(reopen)) {
      const data = await call(urlFor(api.mine, reopen), "GET");
      data.progress = (await call(api.next, "POST")).progress;
      await show(data);
    } else {
      await show(await call(api.next, "POST"));
    }
  });
})();
