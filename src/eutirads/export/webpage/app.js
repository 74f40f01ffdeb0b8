// The static page: loads the runtime and the model when it opens, then classifies the
// chosen image on this device. Every step that a bundle may or may not have (localiser,
// descriptors, calibration, abstention) is one function below, run only when site.json
// describes that part; the Python predictor is the reference for each.
import * as ort from "./vendor/onnxruntime-web/ort.wasm.bundle.min.mjs";
import * as P from "./pipeline.js";
import * as L from "./localiser.js";
import * as A from "./abstention.js";
import * as G from "./guideline.js";
import * as M from "./measured.js";

const SITE_FORMAT = 1;
const BUNDLE_FORMATS = [1, 2];  // as eutirads.export.web.PAGE_BUNDLE_FORMATS

const $ = (id) => document.getElementById(id);
// classifier: {spec, session, weight, ...site.classifier}; localiser: {spec, session,
// ...site.localiser}; either may be null (a bundle holds one or both); measured:
// {session, ...site.measured} or null (only beside a localiser).
const state = { site: null, classifier: null, localiser: null, measured: null, outline: null, texts: null,
                lang: "en", last: null, cardText: "", error: null, overlap: false,
                components: {} };

// A failure the page explains in the user's language: `key` names an i18n string.
class PageError extends Error {
  constructor(key, params = {}) { super(`${key} ${JSON.stringify(params)}`); this.key = key; this.params = params; }
}

// ---------------------------------------------------------------- text and language
function t(key, params = {}) {
  const table = state.texts?.ui?.[state.lang] || state.texts?.ui?.en || {};
  const text = table[key] ?? state.texts?.ui?.en?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

// Guideline and descriptor texts come in English from eutirads.categories (site.json);
// the Spanish catalogue is keyed by that English text, so a changed text falls back to
// English instead of showing a stale translation.
function g(english) {
  if (state.lang === "en") return english;
  return state.texts?.guideline?.[state.lang]?.[english] ?? english;
}

function chooseLanguage(available) {
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (available.includes(base)) return base;
  }
  return "en";
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  if (state.error) showMessage(state.error);
  if (state.last) renderResult(state.last);
}

// ---------------------------------------------------------------- status and messages
function setState(name) {
  document.body.dataset.state = name;
  const key = { loading: "loading", ready: "ready", busy: "busy" }[name];
  if (key) { $("status").dataset.i18n = key; $("status").textContent = t(key); }
}

function showMessage(error) {
  state.error = error;
  const box = $("message");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = error instanceof PageError
    ? t(error.key, error.params) : t("err_unexpected", { detail: String(error?.message || error) });
}

// ---------------------------------------------------------------- loading
async function fetchOk(url) {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) throw new PageError("err_load", { detail: `${url}: HTTP ${response.status}` });
  return response;
}

function checkSite(site) {
  if (site.site_format !== SITE_FORMAT) {
    throw new PageError("err_site_format", { detail: `site.json format ${site.site_format} (this page reads ${SITE_FORMAT})` });
  }
  if (!BUNDLE_FORMATS.includes(site.bundle_format)) {
    throw new PageError("err_site_format", { detail: `bundle format ${site.bundle_format} (this page reads ${BUNDLE_FORMATS.join(", ")})` });
  }
}

// After this, the page cannot reach the network at all: a second CSP, enforced together
// with the first, forbids every connection (fetch, XHR, WebSocket, beacons).
function closeNetwork() {
  const meta = document.createElement("meta");
  meta.httpEquiv = "Content-Security-Policy";
  meta.content = "connect-src 'none'";
  document.head.appendChild(meta);
}

async function load() {
  setState("loading");
  $("no-script").hidden = true;  // this script runs, so the page was opened right
  state.texts = await (await fetchOk("i18n.json")).json();
  const languages = Object.keys(state.texts.languages);
  state.lang = chooseLanguage(languages);
  const select = $("lang");
  for (const code of languages) select.add(new Option(state.texts.languages[code], code));
  select.value = state.lang;
  select.addEventListener("change", () => { state.lang = select.value; applyLanguage(); });
  applyLanguage();

  const site = await (await fetchOk("site.json")).json();
  checkSite(site);
  state.site = site;
  if (site.service_worker && await isolateByServiceWorker()) return new Promise(() => {});  // reloading
  // Threads need a cross-origin-isolated page (COOP/COEP headers), which static hosts
  // rarely give; one thread works everywhere.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  window.eutiradsPage.threads = ort.env.wasm.numThreads;
  // The runtime in its own worker: the page stays responsive while the model runs, and
  // where a core is left over (one wasm thread, or fewer threads than cores) the page's
  // own work goes on beside it (state.overlap).
  ort.env.wasm.proxy = true;
  state.overlap = ort.env.wasm.numThreads === 1 || ort.env.wasm.numThreads < (navigator.hardwareConcurrency || 1);
  ort.env.logLevel = "error";
  // Every component at once; those the page has no steps for yet (site.components) are
  // loaded the same way, into state.components, for code that uses them.
  const others = Object.entries(site.components || {});
  const [classifier, localiser, measured, outline, card, ...loaded] = await Promise.all([
    site.classifier ? loadClassifier(site.classifier) : null,
    site.localiser ? loadLocaliser(site.localiser) : null,
    site.measured && site.localiser ? createSession(site.measured.model).then((session) => ({ ...site.measured, session })) : null,
    site.outline && site.localiser && site.classifier ? createSession(site.outline.model).then((session) => ({ ...site.outline, session })) : null,
    site.card ? fetchOk(site.card).then((r) => r.text()) : "",
    ...others.map(([, part]) => loadPart(part)),
  ]);
  const components = Object.fromEntries(others.map(([name], i) => [name, loaded[i]]));
  Object.assign(state, { classifier, localiser, measured, outline, components, cardText: card });
  window.eutiradsPage.components = Object.keys(components);
  await warmUp();
  closeNetwork();
  renderCard();
  setState("ready");
}

// A site exported with --service-worker, on a host that sends no COOP/COEP headers:
// install isolate.js (which adds them) and reload once, before the model is fetched, so
// the reloaded page is cross-origin isolated and runs the model on several threads. True
// when a reload is under way. Once per tab (sessionStorage): a browser that will not
// isolate the page, or a blocked service worker, gets the one-thread page at once.
async function isolateByServiceWorker() {
  if (self.crossOriginIsolated || !("serviceWorker" in navigator) || !self.isSecureContext) return false;
  const key = "eutirads-isolation-tried";
  if (sessionStorage.getItem(key)) return false;
  sessionStorage.setItem(key, "1");
  // A refused or blocked registration may never settle: give it a few seconds.
  const timeout = new Promise((resolve) => setTimeout(() => resolve(false), 3000));
  const installed = (async () => {
    await navigator.serviceWorker.register("isolate.js");
    await navigator.serviceWorker.ready;
    return true;
  })().catch(() => false);
  if (!await Promise.race([installed, timeout])) return false;
  location.reload();
  return true;
}

async function loadSpec(url) {
  const spec = await (await fetchOk(url)).json();
  if (spec.format_version !== 1) {
    throw new PageError("err_site_format", { detail: `${url}: preprocess format ${spec.format_version} (this page reads 1)` });
  }
  return spec;
}

async function createSession(url) {
  const bytes = await (await fetchOk(url)).arrayBuffer();
  try {
    return await ort.InferenceSession.create(new Uint8Array(bytes),
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  } catch (error) {
    throw new PageError("err_load", { detail: `${url}: ${String(error?.message || error).split("\n")[0].slice(0, 200)}` });
  }
}

async function loadClassifier(c) {
  const [spec, head, session, reference] = await Promise.all([
    loadSpec(c.preprocess), fetchOk(c.head.file).then((r) => r.arrayBuffer()), createSession(c.model),
    c.ood ? fetchOk(c.ood.reference).then((r) => r.arrayBuffer()) : null]);
  const [k, channels] = c.head.shape;
  return { ...c, spec, session, weight: new Float32Array(head, 0, k * channels),
           reference: reference ? A.halfToFloat(new Uint16Array(reference)) : null };
}

async function loadLocaliser(l) {
  const [spec, session] = await Promise.all([loadSpec(l.preprocess), createSession(l.model)]);
  return { ...l, spec, session };
}

// Any component: its session, and its preprocessing when it has one.
async function loadPart(part) {
  const [spec, session] = await Promise.all([part.preprocess ? loadSpec(part.preprocess) : null,
                                             createSession(part.model)]);
  return { ...part, spec, session };
}

// One run on a made-up frame, so the first image pays neither for the runtime's set-up
// nor for compiling the preprocessing.
async function warmUp() {
  const width = 320, height = 240;
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 40; y < 200; y++) {
    for (let x = 40; x < 280; x++) rgb.fill(((x * 7919 + y * 104729) % 97) * 2 + 30, (y * width + x) * 3, (y * width + x) * 3 + 3);
  }
  await predict({ rgb, width, height });
}

// ---------------------------------------------------------------- decoding
function sniff(bytes) {
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length >= 24 && png.every((v, i) => bytes[i] === v)) return "image/png";
  if (bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
  return null;
}

// The declared size, read from the header before any pixel is decoded (as imageio does),
// so a decompression bomb costs nothing. null when the header is unreadable.
function declaredSize(bytes, type) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (type === "image/png") return { width: view.getUint32(16), height: view.getUint32(20) };
  let i = 2;
  while (i + 9 < bytes.length) {
    if (bytes[i] !== 0xff) return null;
    const marker = bytes[i + 1];
    if (marker === 0xff) { i += 1; continue; }
    const length = view.getUint16(i + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return { width: view.getUint16(i + 7), height: view.getUint16(i + 5) };
    }
    i += 2 + length;
  }
  return null;
}

// The file without its EXIF metadata (JPEG APP1 "Exif" segments, PNG eXIf chunks):
// browsers turn an image by its EXIF orientation, Pillow (and so `eutirads predict`) does
// not, so the page decodes the pixels as stored, as Python does.
function withoutExif(bytes, type) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keep = [];
  if (type === "image/png") {
    keep.push(bytes.subarray(0, 8));
    for (let i = 8; i + 12 <= bytes.length;) {
      const end = i + 12 + view.getUint32(i);
      const name = String.fromCharCode(...bytes.subarray(i + 4, i + 8));
      if (name !== "eXIf") keep.push(bytes.subarray(i, Math.min(end, bytes.length)));
      if (name === "IEND") break;
      i = end;
    }
  } else {
    let i = 2;
    keep.push(bytes.subarray(0, 2));
    while (i + 4 <= bytes.length && bytes[i] === 0xff && bytes[i + 1] !== 0xda) {
      const end = i + 2 + view.getUint16(i + 2);
      const exif = bytes[i + 1] === 0xe1 && String.fromCharCode(...bytes.subarray(i + 4, i + 8)) === "Exif";
      if (!exif) keep.push(bytes.subarray(i, Math.min(end, bytes.length)));
      i = end;
    }
    keep.push(bytes.subarray(i));  // the scan and everything after it
  }
  return new Blob(keep, { type });
}

// RGB pixels of a JPEG/PNG file, decoded without colour management so they are the
// file's own values, as Pillow reads them.
async function decode(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const type = sniff(bytes);
  if (!type) throw new PageError("err_not_image");
  const size = declaredSize(bytes, type);
  if (!size || size.width <= 0 || size.height <= 0) throw new PageError("err_corrupt");
  if (size.width * size.height > state.site.max_pixels) {
    throw new PageError("err_too_large", { width: size.width, height: size.height,
                                           limit: state.site.max_pixels.toLocaleString(state.lang) });
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(withoutExif(bytes, type),
      { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new PageError("err_corrupt");
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  return { rgb, rgba, width, height };  // rgba: kept for drawing the frame
}

// ---------------------------------------------------------------- prediction (Predictor.predict)
let modelMs = 0;  // time inside onnxruntime-web for the current image

async function run(part, batch, n, outputs) {
  const [h, w] = part.spec.input_size;
  const feeds = { [part.input]: new ort.Tensor("float32", batch, [n, 3, h, w]) };
  const started = performance.now();
  const result = await part.session.run(feeds);
  modelMs += performance.now() - started;
  return outputs.map((name) => result[name]);
}

function categoryName(label) {
  if (state.classifier.scheme === "eu-tirads") return `EU-TIRADS ${label}: ${state.site.guideline.categories[label].name}`;
  return `TI-RADS ${label}`;
}

// Localiser.find: the nodule (or null) and the mask, from the localiser's map. `area`:
// the image area when found already (null: the localiser's crop rule finds it).
async function localise(image, area) {
  const part = state.localiser;
  const { tensor, box } = P.prepare(image.rgb, image.width, image.height, part.spec, null, area);
  const [logits] = await run(part, tensor, 1, part.outputs);
  const [, , gh, gw] = logits.dims;
  const prob = L.probabilityToImage(L.sigmoid(logits.data), gh, gw, part.spec, box, image.width, image.height);
  const binary = new Uint8Array(prob.length);
  for (let i = 0; i < prob.length; i++) binary[i] = prob[i] >= part.threshold ? 1 : 0;
  const { mask, nodule } = L.noduleFromMask(binary, prob, image.width, image.height,
                                            L.imageMinRegion(part.min_region_px, part.spec, box),
                                            null, part.min_score || 0);
  return { mask, nodule, area: box, prob };
}

// Measured.logits: the measured descriptors' logits ({name: Float32Array}) on the
// localiser's outline (`localised`: its probability map and crop box).
async function measure(image, localised) {
  const part = state.measured, [gh, gw] = part.grid;
  const inputs = M.measureInputs(image.rgb, image.width, image.height, localised.prob, localised.area, part.grid);
  const feeds = { gray: new ort.Tensor("float32", inputs.gray, [1, 1, gh, gw]),
                  prob: new ort.Tensor("float32", inputs.prob, [1, 1, gh, gw]),
                  scale: new ort.Tensor("float32", inputs.scale, [1, 2]) };
  const started = performance.now();
  const result = await part.session.run(feeds);
  modelMs += performance.now() - started;
  return Object.fromEntries(Object.entries(part.descriptors).map(([name, d]) => [name, result[d.output].data]));
}

// Outline.probabilities: the calibrated category probabilities read inside the
// localiser's outline (`localised`: its probability map and crop box), the inputs built
// as inference.outline.outline_inputs: the image area stretched to the localiser's grid
// under the localiser's normalisation, and the map on that grid.
async function outlineProbabilities(image, localised) {
  const part = state.outline, spec = { ...state.localiser.spec, resize: "stretch" };
  const [gh, gw] = spec.input_size;
  const { tensor } = P.prepare(image.rgb, image.width, image.height, spec, null, localised.area);
  const { prob } = M.measureInputs(image.rgb, image.width, image.height, localised.prob, localised.area, [gh, gw]);
  const feeds = { image: new ort.Tensor("float32", tensor, [1, 3, gh, gw]),
                  prob: new ort.Tensor("float32", prob, [1, 1, gh, gw]) };
  const started = performance.now();
  const result = await part.session.run(feeds);
  modelMs += performance.now() - started;
  return A.applyTemperature(P.softmax(Array.from(result.logits.data)), part.temperature);
}

// Mean over the batch (the image and its mirror) of each row's softmax.
function meanSoftmax(tensor, n) {
  const k = tensor.dims[1], mean = new Array(k).fill(0);
  for (let i = 0; i < n; i++) {
    const p = P.softmax(Array.from(tensor.data.subarray(i * k, (i + 1) * k)));
    for (let j = 0; j < k; j++) mean[j] += p[j] / n;
  }
  return mean;
}

const argmax = (p) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);

// The classifier's input for the crop from `area` (the image and, with mirror TTA, its
// mirror, as one batch) and the crop box.
function classifierInput(image, nodule, area) {
  const part = state.classifier, [h, w] = part.spec.input_size;
  const { tensor, box } = P.prepare(image.rgb, image.width, image.height, part.spec, nodule, area);
  if (!part.tta) return { batch: tensor, box };
  const batch = new Float32Array(2 * tensor.length);
  batch.set(tensor);
  batch.set(P.mirror(tensor, h, w), tensor.length);
  return { batch, box };
}

// region.find_image_area on the frame the models see: on a cleaned frame (image.area
// known) only around that area, which gives the same box for less work.
function searchAgain(image) {
  if (image.area) return P.findImageAreaCleaned(image.rgb, image.width, image.height, image.area);
  return P.findImageArea(image.rgb, image.width, image.height);
}

const sameBox = (a, b) => a && b && a.x0 === b.x0 && a.y0 === b.y0 && a.x1 === b.x1 && a.y1 === b.y1;

// The classifier on the image, its crop from the nodule box when given: the category from
// the head (calibrated), the descriptor heads (those measured on the localiser's outline
// in their place, `localised` the localiser's result) and the rule, the heatmap, and the
// reason to abstain if any -- the steps and their order of Predictor.predict.
async function classify(image, nodule, shared, localised = null) {
  const part = state.classifier, spec = part.spec, names = part.class_names;
  const n = part.tta ? 2 : 1;
  // predictor._image_area: found once for the crop (or given: the localiser's); none found
  // is the clean-frame rule's "no ultrasound area" (the crop then takes the whole frame).
  let area = spec.frame === "detect" ? shared : null, noArea = false;
  const search = spec.frame === "detect" && !area;
  // The search runs on the cleaned frame and almost always finds the area the clean-frame
  // rule found: with a spare core (state.overlap) the model, in its worker, starts on that
  // crop meanwhile, and its answer is kept only if the search then finds the very same box.
  let early = null;
  if (search && image.area && state.overlap) {
    early = classifierInput(image, nodule, image.area);
    early.outputs = run(part, early.batch, n, part.outputs);
  }
  if (search) {
    try {
      area = searchAgain(image);
    } catch (error) {
      if (!(error instanceof P.NoImageAreaError)) throw error;
      noArea = true;
    }
  }
  let input = early, outputs;
  if (early && !noArea && sameBox(area, image.area)) {
    outputs = await early.outputs;
  } else {
    if (early) await early.outputs;  // one run at a time
    input = classifierInput(image, nodule, area);
    outputs = await run(part, input.batch, n, part.outputs);
  }
  const box = input.box;
  const byName = Object.fromEntries(part.outputs.map((name, i) => [name, outputs[i]]));
  const head = A.applyTemperature(meanSoftmax(byName.logits, n), part.temperature);
  const sources = { head };
  let descriptors = null, rule = null;
  if (Object.keys(part.descriptors).length || state.measured) {
    descriptors = {};
    const heads = {};
    for (const [name, d] of Object.entries(part.descriptors)) heads[name] = { values: d.values, p: meanSoftmax(byName[d.output], n) };
    // the measured ones replace the heads of the same name (keeping their place), as in
    // Predictor.predict: only on a nodule the localiser found
    if (state.measured && localised && localised.nodule) {
      for (const [name, logits] of Object.entries(await measure(image, localised))) {
        heads[name] = { values: state.measured.descriptors[name].values, p: P.softmax(Array.from(logits)) };
      }
    }
    for (const [name, { values, p }] of Object.entries(heads)) {
      descriptors[name] = { value: values[argmax(p)],
                            probabilities: Object.fromEntries(values.map((v, i) => [v, p[i]])) };
    }
    // the rule needs every descriptor (measured ones alone and no nodule: the head answers)
    if (part.rule_applies && Object.keys(state.site.rule.descriptors).every((d) => d in heads)) {
      rule = G.ruleDistribution(state.site.rule, heads, names, head);
      sources.rule = rule.probabilities;
      sources.combined = head.map((v, i) => (v + rule.probabilities[i]) / 2);
    }
  }
  // the category read inside the localiser's outline: the answer whenever a nodule is
  // found, when the bundle makes it the default (with its own low-confidence threshold)
  if (state.outline && localised && localised.nodule) sources.outline = await outlineProbabilities(image, localised);
  let source = part.category_source in sources ? part.category_source : "head";
  let lowConfidence = part.low_confidence;
  if (sources.outline && state.outline.default) {
    source = "outline";
    lowConfidence = state.outline.low_confidence;
  }
  const proba = sources[source];
  const index = source === "rule" ? names.indexOf(rule.label) : argmax(proba);
  let categorySources = null;
  if (descriptors || sources.outline) {
    categorySources = {};
    for (const [key, p] of Object.entries(sources)) {
      categorySources[key] = { label: key === "rule" ? rule.label : names[argmax(p)],
                               probabilities: Object.fromEntries(names.map((c, i) => [c, p[i]])) };
    }
  }
  const features = byName.features;
  const [, channels, fh, fw] = features.dims;
  const first = features.data.subarray(0, channels * fh * fw);
  const reason = noArea ? "no-ultrasound-area" : abstainReason(image, first, channels, fh * fw, proba[index], lowConfidence);
  // The heatmap of the unmirrored image, as the Python predictor draws it.
  const cam = P.classActivationMap(first, channels, fh, fw, part.weight, index);
  const heat = P.heatmapToImage(cam, fh, fw, spec, box, image.width, image.height);
  return { index, proba, box, heat, descriptors, categorySources, source, rulePath: rule?.path ?? null,
           ruleTop: rule?.top ?? null, reason };
}

// AbstainRule.reason: the first reason not to answer after the image-area check, or null.
function abstainReason(image, features, channels, plane, confidence, lowConfidence) {
  const part = state.classifier;
  if (A.notUltrasound(image.rgb, image.width, image.height, state.site.not_ultrasound)) return "not-ultrasound";
  if (part.ood) {
    const [rows] = part.ood.shape;
    const distance = A.knnDistance(features, channels, plane, part.reference, rows, part.ood.k);
    if (distance > part.ood.threshold) return "out-of-distribution";
  }
  if (confidence < lowConfidence) return "low-confidence";
  return null;
}

// `eutirads predict`: the clean frame (frame.clean_frame: blanked outside the image area;
// none is an abstention), then Predictor.predict on it. The result as Prediction.to_dict,
// plus the heatmap, the mask and the frame the models saw.
async function predict(decoded) {
  const started = performance.now();
  modelMs = 0;
  const result = { label: null, name: null, confidence: null, probabilities: {}, crop_box: null,
                   box_source: "none", abstain: false, abstain_reason: null };
  let nodule = null, mask = null, heat = null, ruleTop = null, image;
  try {
    const { blanked, area } = P.cleanFrame(decoded.rgb, decoded.width, decoded.height);
    image = { ...decoded, rgb: blanked, area };
  } catch (error) {
    if (!(error instanceof P.NoImageAreaError)) throw error;
    // As `eutirads predict` reports it: no model ran, so no box and no probabilities.
    Object.assign(result, { abstain: true, abstain_reason: "no-ultrasound-area" });
    delete result.box_source;
    result.timing = { compute_ms: performance.now() - started, model_ms: 0 };
    return { result, heat, mask, ruleTop, image: decoded };
  }
  // Predictor.predict: with a localiser that finds the image area, it is found once, by the
  // localiser's crop rule, for both models.
  let area = null;
  if (state.localiser && state.localiser.spec.frame === "detect") {
    let found;  // preprocess.crop_box's search: none found is the whole frame
    try {
      found = searchAgain(image);
    } catch (error) {
      if (!(error instanceof P.NoImageAreaError)) throw error;
      found = { x0: 0, y0: 0, x1: image.width, y1: image.height };
    }
    area = P.cropBox(image.rgb, image.width, image.height, state.localiser.spec, null, found);
  }
  let localised = null;
  if (state.localiser) {
    const found = await localise(image, area);
    localised = found;
    mask = found.mask;
    result.nodule = found.nodule;
    if (!found.nodule) result.nodule_reason = state.localiser.no_nodule_reason;
    else { nodule = found.nodule.box; result.box_source = "localiser"; }
    // the box crops only a classifier that reads the nodule (crop "roi")
    if (!state.classifier || state.classifier.spec.crop !== "roi") result.box_source = "none";
    result.crop_box = [found.area.x0, found.area.y0, found.area.x1, found.area.y1];
  }
  if (state.classifier) {
    const c = await classify(image, nodule, area, localised);
    const names = state.classifier.class_names;
    result.label = names[c.index];
    result.name = categoryName(result.label);
    result.confidence = c.proba[c.index];
    result.probabilities = Object.fromEntries(names.map((name, j) => [name, c.proba[j]]));
    result.crop_box = [c.box.x0, c.box.y0, c.box.x1, c.box.y1];
    result.abstain = c.reason !== null;
    result.abstain_reason = c.reason;
    if (c.descriptors) result.descriptors = c.descriptors;
    if (c.categorySources) {
      result.category_sources = c.categorySources;
      result.category_source = c.source;
    }
    if (c.rulePath !== null) result.rule_path = c.rulePath;
    heat = c.heat;
    ruleTop = c.ruleTop;
  }
  result.timing = { compute_ms: performance.now() - started, model_ms: modelMs };
  return { result, heat, mask, ruleTop, image };
}

// ---------------------------------------------------------------- rendering
function fill(id, text) { $(id).textContent = text; }

function renderResult({ result, heat, mask, image, ruleTop }) {
  $("result").hidden = false;
  const cats = state.site.guideline.categories;
  const classified = result.label !== null;
  const eu = classified && state.classifier.scheme === "eu-tirads";
  let heading = t(result.nodule ? "nodule_found" : "no_nodule");
  if (!classified && result.abstain) heading = t("no_answer");
  if (classified) heading = eu ? `EU-TIRADS ${result.label} · ${g(cats[result.label].name)}` : `TI-RADS ${result.label}`;
  // An abstention is never shown as a category to act on: the model's guess, said so.
  if (classified && result.abstain) heading = `${t("no_answer")} (${t("guess")}: ${heading})`;
  fill("category", heading);
  $("probabilities-box").hidden = !classified;
  const table = $("probabilities");
  table.replaceChildren();
  for (const [name, p] of Object.entries(result.probabilities)) {
    const row = table.insertRow();
    if (name === result.label) row.className = "top";
    row.insertCell().textContent = eu ? `${name} · ${g(cats[name].name)}` : name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    const cell = row.insertCell();
    cell.className = "bar-cell";
    cell.appendChild(bar);
    row.insertCell().textContent = p.toFixed(3);
  }
  // An abstention keeps the numbers for whoever looks, but gives no advice.
  const advise = eu && !result.abstain;
  $("guideline").hidden = !advise;
  $("scheme-note").hidden = !classified || eu;
  $("abstain").hidden = !result.abstain;
  if (result.abstain) fill("abstain", t("abstain", { reason: t(`abstain_${result.abstain_reason}`) }));
  if (advise) {
    const cat = cats[result.label];
    fill("definition", g(cat.definition));
    fill("features", g(cat.features));
    fill("risk", g(cat.risk));
    fill("advice", g(cat.advice));
  }
  renderNodule(result.nodule);
  renderDescriptors(result.descriptors, ruleTop, result.category_sources, result.category_source);
  fill("timing", t("timing", { model: result.timing.model_ms.toFixed(1), total: (result.timing.total_ms ?? 0).toFixed(1) }));
  if (image) drawImage(image, heat, result.nodule);
}

// The localiser's regions: size in pixels (and mm when the image says its pixel size).
function renderNodule(nodule) {
  $("nodule-box").hidden = nodule === undefined;
  if (nodule === undefined) return;
  const list = $("nodule");
  list.replaceChildren();
  for (const region of nodule?.regions ?? []) {
    const item = document.createElement("li");
    const mm = region.long_axis_mm !== null
      ? ` (${region.long_axis_mm.toFixed(1)} x ${region.short_axis_mm.toFixed(1)} mm)` : "";
    item.textContent = t("region", { long: region.long_axis_px.toFixed(0), short: region.short_axis_px.toFixed(0), mm,
                                     score: region.score.toFixed(2) });
    list.appendChild(item);
  }
}

// The descriptor heads' answers and, with all five, the guideline rule's reasoning.
function renderDescriptors(descriptors, ruleTop, sources, used) {
  $("descriptors-box").hidden = !descriptors;
  if (!descriptors) return;
  const table = $("descriptors");
  table.replaceChildren();
  for (const [name, value] of Object.entries(descriptors)) {
    const row = table.insertRow();
    row.insertCell().textContent = g(name);
    row.insertCell().textContent = g(value.value);
    row.insertCell().textContent = value.probabilities[value.value].toFixed(2);
  }
  $("rule-box").hidden = !ruleTop;
  if (ruleTop) fill("rule-path", G.rulePath(state.site.rule, ruleTop, g));
  // The category from each source (head, rule, combined, outline) and which one the page shows.
  const list = Object.entries(sources || {}).map(([key, source]) =>
    `${t(`source_${key}`)}: ${source.label}${key === used ? ` (${t("source_used")})` : ""}`);
  $("sources").hidden = list.length < 2;
  fill("sources", list.join(" · "));
}

// The frame the models saw, opaque: blanked outside the image area, as `eutirads predict`
// has it. From the decoded RGBA, four bytes a step (no alpha: Python reads RGB).
function frameRgba(image) {
  const { width, height } = image;
  const out = new Uint32Array(width * height).fill(0xff000000);  // opaque black
  if (!image.rgba) {  // a frame made here (the warm-up): from its RGB
    for (let i = 0, j = 0; i < out.length; i++, j += 3) {
      out[i] = (0xff000000 | (image.rgb[j + 2] << 16) | (image.rgb[j + 1] << 8) | image.rgb[j]) >>> 0;
    }
  } else {
    const src = new Uint32Array(image.rgba.buffer, image.rgba.byteOffset, width * height);
    const area = image.area ?? { x0: 0, y0: 0, x1: width, y1: height };
    for (let y = area.y0; y < area.y1; y++) {
      for (let i = y * width + area.x0, end = y * width + area.x1; i < end; i++) out[i] = src[i] | 0xff000000;
    }
  }
  return new Uint8ClampedArray(out.buffer);
}

function drawImage(image, heat, nodule) {
  for (const id of ["image", "heat", "outline"]) {
    $(id).width = image.width;
    $(id).height = image.height;
  }
  $("image").getContext("2d").putImageData(new ImageData(frameRgba(image), image.width, image.height), 0, 0);
  $("heat-controls").hidden = !heat;
  if (heat) {
    const colours = P.colorize(heat, state.site.heatmap_colors);
    $("heat").getContext("2d").putImageData(new ImageData(colours, image.width, image.height), 0, 0);
    $("heat").style.opacity = String($("opacity").value / 100);
  }
  const pen = $("outline").getContext("2d");
  pen.clearRect(0, 0, image.width, image.height);
  pen.strokeStyle = "#00e5ff";
  pen.lineWidth = Math.max(1, Math.round(image.width / 300));
  for (const region of nodule?.regions ?? []) {
    const points = region.contour;
    if (!points.length) continue;
    pen.beginPath();
    pen.moveTo(points[0][0] + 0.5, points[0][1] + 0.5);
    for (const [x, y] of points.slice(1)) pen.lineTo(x + 0.5, y + 0.5);
    pen.closePath();
    pen.stroke();
  }
}

// The model card (Markdown) as headings, list items, table rows and paragraphs, built
// with textContent only: nothing in it can run as HTML.
function renderCard() {
  const meta = state.site.bundle || {};
  fill("model-name", `${meta.name ?? "?"} ${meta.version ?? ""} (${meta.model_name ?? ""})`);
  const root = $("card");
  root.replaceChildren();
  let table = null, list = null;
  const plain = (s) => s.replace(/\*\*|`/g, "");
  for (const line of state.cardText.split("\n")) {
    const text = line.trim();
    if (!text.startsWith("|")) table = null;
    if (!text.startsWith("- ")) list = null;
    if (!text) continue;
    const heading = /^(#+)\s+(.*)$/.exec(text);
    if (heading) {
      const el = document.createElement(`h${Math.min(6, heading[1].length + 2)}`);
      el.textContent = plain(heading[2]);
      root.appendChild(el);
    } else if (text.startsWith("|")) {
      if (/^\|[\s|:-]+\|$/.test(text)) continue;
      if (!table) { table = document.createElement("table"); root.appendChild(table); }
      const row = table.insertRow();
      for (const cell of text.slice(1, -1).split("|")) row.insertCell().textContent = plain(cell.trim());
    } else if (text.startsWith("- ")) {
      if (!list) { list = document.createElement("ul"); root.appendChild(list); }
      const item = document.createElement("li");
      item.textContent = plain(text.slice(2));
      list.appendChild(item);
    } else {
      const p = document.createElement("p");
      p.textContent = plain(text);
      root.appendChild(p);
    }
  }
}

// ---------------------------------------------------------------- events
async function onFile(file) {
  if (!file || !(state.classifier || state.localiser)) return;
  const started = performance.now();
  setState("busy");
  showMessage(null);
  try {
    const decodedImage = await decode(file);
    const decoded = performance.now();
    const { result, heat, mask, ruleTop, image } = await predict(decodedImage);
    const computed = performance.now();
    state.last = { result, heat, mask, image, ruleTop };
    renderResult(state.last);
    result.timing.decode_ms = decoded - started;
    result.timing.render_ms = performance.now() - computed;
    // Shown when the browser has painted the result.
    await new Promise((resolve) => requestAnimationFrame(() => resolve()));
    result.timing.total_ms = performance.now() - started;
    fill("timing", t("timing", { model: result.timing.model_ms.toFixed(1), total: result.timing.total_ms.toFixed(1) }));
    window.eutiradsPage.last = result;
    window.eutiradsPage.heat = heat;
    setState("done");
  } catch (error) {
    state.last = null;
    window.eutiradsPage.last = null;
    window.eutiradsPage.heat = null;
    $("result").hidden = true;
    showMessage(error);
    setState("rejected");
  }
}

// One image at a time, in the order chosen (the sessions run one input at a time).
let queue = Promise.resolve();
function enqueue(file) { queue = queue.then(() => onFile(file)); }

function wire() {
  $("file").addEventListener("change", (event) => {
    enqueue(event.target.files[0]);
    event.target.value = "";  // choosing the same file again is a new choice
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    enqueue(event.dataTransfer.files[0]);
  });
  $("opacity").addEventListener("input", () => { $("heat").style.opacity = String($("opacity").value / 100); });
}

// For tests and benchmarks: the last result (as Prediction.to_dict) and its heatmap, and
// the classifier's time alone on a blank input (median ms of `runs`).
window.eutiradsPage = {
  last: null, heat: null, ready: null, threads: null, components: [],
  async timeModel(runs = 10) {
    const part = state.classifier || state.localiser;
    const [h, w] = part.spec.input_size;
    const times = [];
    for (let i = 0; i < runs; i++) {
      modelMs = 0;
      await run(part, new Float32Array(3 * h * w), 1, part.outputs);
      times.push(modelMs);
    }
    return times.sort((a, b) => a - b)[Math.floor(runs / 2)];
  },
};
wire();
window.eutiradsPage.ready = load().then(() => true, (error) => {
  closeNetwork();
  showMessage(error);
  setState("failed");
  return false;
});
