// The browser's copy of eutirads' eval-time preprocessing and heatmap, written once here.
//
// Each function is a port of one Python function, named in its comment, and is held to it
// by tests (tests/test_export_web_pipeline.py runs both on the same pixels and demands the
// same crop box and the same model input to the bit). preprocess.json, exported with the
// model, is the one description of the rule; nothing here hard-codes a model's settings.
// Pure functions on typed arrays: no DOM, so they run the same in a page or in a worker.
//
// Pixels are RGB Uint8Array, row-major, 3 bytes a pixel; boxes are {x0, y0, x1, y1} with
// x1, y1 exclusive, as region.Box.

export class NoImageAreaError extends Error {}

const f32 = Math.fround;

// Python's round(): halves go to the even neighbour.
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// region._gray: the float32 mean of the three channels.
function gray(rgb, width, height) {
  const out = new Float32Array(width * height);
  for (let i = 0, p = 0; i < out.length; i++, p += 3) {
    out[i] = (rgb[p] + rgb[p + 1] + rgb[p + 2]) / 3;
  }
  return out;
}

// scipy.ndimage.uniform_filter1d, mode "reflect" (d c b a | a b c d | d c b a): a running
// sum in float64, each mean stored as float32 -- scipy's own order of operations, so a
// pixel at the threshold falls on the same side. `line` is a scratch buffer of length +
// size - 1 holding the line and its reflected edges; the means go to dst from `out`.
function uniformLine(src, dst, start, length, size, line, out = start) {
  const left = Math.floor(size / 2);
  for (let k = 0; k < length; k++) line[left + k] = src[start + k];
  // the edges, reflected about the half-sample (lines here are far longer than `size`)
  for (let k = 0; k < left; k++) line[k] = line[2 * left - 1 - k];
  for (let k = left + length; k < length + size - 1; k++) line[k] = line[2 * (left + length) - 1 - k];
  let sum = 0;
  for (let k = 0; k < size; k++) sum += line[k];
  dst[out] = sum / size;
  for (let i = 1; i < length; i++) {
    sum += line[i + size - 1] - line[i - 1];
    dst[out + i] = sum / size;
  }
}

// The row of `values` that position k of a reflected column of `length` rows holds (the
// same reflection as uniformLine's edges).
function reflectedRow(k, left, length) {
  if (k < left) return left - 1 - k;
  if (k >= left + length) return left + 2 * length - 1 - k;
  return k - left;
}

// uniform_filter1d along axis 0: every column's running sum at once, one row at a time,
// so memory is read in order (a column walk jumps a whole row each step). Each column
// gets exactly uniformLine's operations in uniformLine's order.
function uniformColumns(values, width, height, size) {
  const left = Math.floor(size / 2);
  const sums = new Float64Array(width);
  const out = new Float32Array(values.length);
  for (let k = 0; k < size; k++) {
    const row = reflectedRow(k, left, height) * width;
    for (let x = 0; x < width; x++) sums[x] += values[row + x];
  }
  for (let x = 0; x < width; x++) out[x] = sums[x] / size;
  for (let i = 1; i < height; i++) {
    const add = reflectedRow(i + size - 1, left, height) * width;
    const drop = reflectedRow(i - 1, left, height) * width;
    const base = i * width;
    for (let x = 0; x < width; x++) {
      sums[x] += values[add + x] - values[drop + x];
      out[base + x] = sums[x] / size;
    }
  }
  return out;
}

// scipy.ndimage.uniform_filter(values, size): axis 0 (columns) first, then axis 1 (rows).
export function uniformFilter(values, width, height, size) {
  const line = new Float64Array(width + size);
  const columns = uniformColumns(values, width, height, size);
  const out = new Float32Array(values.length);
  for (let y = 0; y < height; y++) uniformLine(columns, out, y * width, width, size, line);
  return out;
}

// scipy.ndimage.minimum_filter / maximum_filter of a 0/1 mask, square `size` (odd),
// mode "constant" with cval 0: the ones in each window counted with running sums, one
// axis at a time. Outside the frame counts as 0: a minimum needs the whole window inside
// and set, a maximum any one pixel set.
function binaryRunFilter(mask, width, height, size, minimum) {
  const radius = (size - 1) / 2;
  const need = minimum ? size : 1;  // a window holds at most `size` ones
  // axis 0: per column the ones in rows [y - radius, y + radius], all columns per row
  const counts = new Int32Array(width);
  for (let y = 0; y < Math.min(radius, height); y++) {
    for (let x = 0; x < width; x++) counts[x] += mask[y * width + x];
  }
  const mid = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    const add = y + radius, drop = y - radius - 1;
    if (add < height) for (let x = 0, i = add * width; x < width; x++, i++) counts[x] += mask[i];
    if (drop >= 0) for (let x = 0, i = drop * width; x < width; x++, i++) counts[x] -= mask[i];
    for (let x = 0, i = y * width; x < width; x++, i++) mid[i] = counts[x] >= need ? 1 : 0;
  }
  // axis 1: the same along each row
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    const base = y * width;
    let ones = 0;
    for (let x = 0; x < Math.min(radius, width); x++) ones += mid[base + x];
    for (let x = 0; x < width; x++) {
      if (x + radius < width) ones += mid[base + x + radius];
      if (x - radius - 1 >= 0) ones -= mid[base + x - radius - 1];
      out[base + x] = ones >= need ? 1 : 0;
    }
  }
  return out;
}

// scipy.ndimage.label with its default (4-connected) structure; labels numbered in raster
// order of their first pixel, as scipy numbers them. Returns {labels, count, areas, boxes}
// with each label's [x0, y0, x1, y1) (ndimage.find_objects).
function label(mask, width, height) {
  const labels = new Int32Array(mask.length);
  const areas = [0];
  const boxes = [null];
  const stack = new Int32Array(mask.length);
  let count = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    count += 1;
    let top = height, bottom = 0, left = width, right = 0, area = 0, sp = 0;
    stack[sp++] = start;
    labels[start] = count;
    while (sp > 0) {
      const i = stack[--sp];
      const x = i % width, y = (i - x) / width;
      area += 1;
      if (y < top) top = y;
      if (y + 1 > bottom) bottom = y + 1;
      if (x < left) left = x;
      if (x + 1 > right) right = x + 1;
      let j = i - 1;
      if (x > 0 && mask[j] && !labels[j]) { labels[j] = count; stack[sp++] = j; }
      j = i + 1;
      if (x + 1 < width && mask[j] && !labels[j]) { labels[j] = count; stack[sp++] = j; }
      j = i - width;
      if (y > 0 && mask[j] && !labels[j]) { labels[j] = count; stack[sp++] = j; }
      j = i + width;
      if (y + 1 < height && mask[j] && !labels[j]) { labels[j] = count; stack[sp++] = j; }
    }
    areas.push(area);
    boxes.push([left, top, right, bottom]);
  }
  return { labels, count, areas, boxes };
}

// region.MIN_SIDE_FRACTION, MAX_ASPECT, MIN_SPECKLE, _GRAIN
const MIN_SIDE_FRACTION = 0.15, MAX_ASPECT = 4.0, MIN_SPECKLE = 0.6, GRAIN = 3.0;

// region.speckle_fraction on one block's bounding box `b` of the grey image: the share of
// its lit pixels (`inside`: those of block `l` above the background) whose 5x5
// neighbourhood varies by at least GRAIN grey levels. The filters run on the box alone,
// as numpy slices it, every step in float32; each row's means are tested as they come.
function speckleFraction(values, labels, l, background, width, b) {
  const [x0, y0, x1, y1] = b, w = x1 - x0, h = y1 - y0;
  const sub = new Float32Array(w * h), squares = new Float32Array(w * h);
  const inside = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0, i = (y0 + y) * width + x0, j = y * w; x < w; x++, i++, j++) {
      const v = values[i];
      sub[j] = v;
      squares[j] = v * v;
      inside[j] = labels[i] === l && v > background ? 1 : 0;
    }
  }
  const columns = uniformColumns(sub, w, h, 5), columnsSq = uniformColumns(squares, w, h, 5);
  const line = new Float64Array(w + 5);
  const mean = new Float32Array(w), meanSq = new Float32Array(w);
  let lit = 0, grainy = 0;
  for (let y = 0; y < h; y++) {
    uniformLine(columns, mean, y * w, w, 5, line, 0);
    uniformLine(columnsSq, meanSq, y * w, w, 5, line, 0);
    for (let x = 0, j = y * w; x < w; x++, j++) {
      if (!inside[j]) continue;
      lit += 1;
      const variance = f32(meanSq[x] - f32(mean[x] * mean[x]));
      if (f32(Math.sqrt(Math.max(variance, 0))) >= GRAIN) grainy += 1;
    }
  }
  return lit ? grainy / lit : 0.0;
}

// region._is_image_block: size, shape and texture of one block (`width`: of the grid the
// labels cover; frameW x frameH: the frame's, which the size test is relative to).
function isImageBlock(values, labels, l, b, width, frameW, frameH, background) {
  const [x0, y0, x1, y1] = b, bw = x1 - x0, bh = y1 - y0;
  if (bh < MIN_SIDE_FRACTION * frameH || bw < MIN_SIDE_FRACTION * frameW) return false;
  if (Math.max(bw / bh, bh / bw) > MAX_ASPECT) return false;
  return speckleFraction(values, labels, l, background, width, b) >= MIN_SPECKLE;
}

// region._panes: the largest accepted block and the accepted blocks beside it.
function panes(areas, boxes, best, accepted) {
  const top = boxes[best][1], bottom = boxes[best][3];
  const chosen = [best];
  for (const l of accepted) {
    if (l === best || areas[l] < areas[best] / 3) continue;
    const start = boxes[l][1], stop = boxes[l][3];
    const shared = Math.min(bottom, stop) - Math.max(top, start);
    if (shared >= 0.6 * Math.min(bottom - top, stop - start)) chosen.push(l);
  }
  return chosen;
}

const AREA_DEFAULTS = { background: 12.0, minSize: null, minFraction: 0.05 };

function checkFrame(width, height) {
  if (height < 16 || width < 16) {
    throw new NoImageAreaError(`frame too small to hold an image area (${width}x${height})`);
  }
}

// region.find_image_area: the bounding box of the ultrasound image area of a frame.
export function findImageArea(rgb, width, height, options = {}) {
  checkFrame(width, height);
  return searchArea(gray(rgb, width, height), width, height, width, height,
                    { ...AREA_DEFAULTS, ...options });
}

// How far around its image area a cleaned frame is searched again (findImageAreaCleaned).
const CLEANED_MARGIN = 8;

// findImageArea of a cleaned frame (frame.clean_frame: zero outside `area`), searching only
// `area` and a margin of zeros around it: the same box to the pixel. Outside that window
// the cleaned frame is zero, so is its smoothed mask (the 5x5 mean reaches 2 pixels), and
// so is its opening (an opening lies inside the mask); inside it every value is the same
// (the edges of the window, reflected or padded, hold zeros as the frame does there, and the
// running sums are exact: grey levels in float32 add up without rounding in float64); the
// size limits stay the whole frame's. Labels keep their order (raster order is kept).
export function findImageAreaCleaned(rgb, width, height, area, options = {}) {
  checkFrame(width, height);
  const x0 = Math.max(0, area.x0 - CLEANED_MARGIN), y0 = Math.max(0, area.y0 - CLEANED_MARGIN);
  const x1 = Math.min(width, area.x1 + CLEANED_MARGIN), y1 = Math.min(height, area.y1 + CLEANED_MARGIN);
  const w = x1 - x0, h = y1 - y0;
  const part = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const from = ((y0 + y) * width + x0) * 3;
    part.set(rgb.subarray(from, from + w * 3), y * w * 3);
  }
  const box = searchArea(gray(part, w, h), w, h, width, height, { ...AREA_DEFAULTS, ...options });
  return { x0: box.x0 + x0, y0: box.y0 + y0, x1: box.x1 + x0, y1: box.y1 + y0 };
}

// The search of findImageArea on the grey `values` of a width x height grid, its limits
// taken from a frameW x frameH frame.
function searchArea(values, width, height, frameW, frameH, { background, minSize, minFraction }) {
  const size = (minSize || Math.max(8, Math.floor(Math.min(frameH, frameW) / 12))) | 1;
  const smooth = uniformFilter(values, width, height, 5);
  let mask = new Uint8Array(values.length);
  for (let i = 0; i < mask.length; i++) mask[i] = smooth[i] > background ? 1 : 0;
  mask = binaryRunFilter(mask, width, height, size, true);
  mask = binaryRunFilter(mask, width, height, size, false);
  const { labels, count, areas, boxes } = label(mask, width, height);
  if (count === 0) throw new NoImageAreaError("no image area found (the frame is blank or only text)");
  // Largest first (ties in label order), each judged as an image block.
  const order = Array.from({ length: count }, (_, i) => i + 1).sort((a, b) => areas[b] - areas[a] || a - b);
  const accepted = order.filter((l) => areas[l] >= minFraction * frameH * frameW &&
                                       isImageBlock(values, labels, l, boxes[l], width, frameW, frameH, background));
  if (!accepted.length) {
    throw new NoImageAreaError("no image area found (no large, speckled block; only text, bands or a blank screen)");
  }
  const chosen = new Uint8Array(count + 1);
  for (const l of panes(areas, boxes, accepted[0], accepted)) chosen[l] = 1;
  // The box of the raw non-background pixels inside the chosen blocks (or, when there are
  // none, of the blocks): both boxes in one pass.
  let lx0 = width, ly0 = height, lx1 = -1, ly1 = -1, bx0 = width, by0 = height, bx1 = -1, by1 = -1;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (!chosen[labels[i]]) continue;
      if (x < bx0) bx0 = x;
      if (x > bx1) bx1 = x;
      if (y < by0) by0 = y;
      by1 = y;
      if (values[i] > background) {
        if (x < lx0) lx0 = x;
        if (x > lx1) lx1 = x;
        if (y < ly0) ly0 = y;
        ly1 = y;
      }
    }
  }
  if (lx1 >= 0) return { x0: lx0, y0: ly0, x1: lx1 + 1, y1: ly1 + 1 };
  return { x0: bx0, y0: by0, x1: bx1 + 1, y1: by1 + 1 };
}

// frame.clean_frame for a plain image: the frame with everything outside its image area
// set to zero (same size), and the area. Throws NoImageAreaError when there is none.
export function cleanFrame(rgb, width, height) {
  const area = findImageArea(rgb, width, height);
  const blanked = new Uint8Array(rgb.length);
  for (let y = area.y0; y < area.y1; y++) {
    const from = (y * width + area.x0) * 3, to = (y * width + area.x1) * 3;
    blanked.set(rgb.subarray(from, to), from);
  }
  return { blanked, area };
}

// preprocess._roi_box: the nodule box widened by `margin` on each side, inside `area`.
function roiBox(box, margin, area) {
  const [x0, y0, x1, y1] = box.map((v) => Math.trunc(v));
  const dx = roundHalfEven((x1 - x0) * margin), dy = roundHalfEven((y1 - y0) * margin);
  return { x0: Math.max(area.x0, x0 - dx), y0: Math.max(area.y0, y0 - dy),
           x1: Math.min(area.x1, x1 + dx), y1: Math.min(area.y1, y1 + dy) };
}

// preprocess.crop_box: the box of the image that the model sees. `found`: the image area
// when the caller found it already.
export function cropBox(rgb, width, height, spec, box = null, found = null) {
  let area = { x0: 0, y0: 0, x1: width, y1: height };
  if (spec.frame === "detect" && found) {
    area = found;
  } else if (spec.frame === "detect") {
    try {
      area = findImageArea(rgb, width, height);
    } catch (error) {
      if (!(error instanceof NoImageAreaError)) throw error;
      // Nothing frame-like found: the image is most likely already the image area.
    }
  }
  if (spec.crop === "roi" && box) {
    const roi = roiBox(box, spec.roi_margin, area);
    if (roi.x1 - roi.x0 >= 2 && roi.y1 - roi.y0 >= 2) area = roi;
  }
  return { x0: Math.max(0, area.x0), y0: Math.max(0, area.y0),
           x1: Math.min(width, area.x1), y1: Math.min(height, area.y1) };
}

// region.crop
export function crop(rgb, width, box) {
  const w = box.x1 - box.x0, h = box.y1 - box.y0;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const from = ((box.y0 + y) * width + box.x0) * 3;
    out.set(rgb.subarray(from, from + w * 3), y * w * 3);
  }
  return out;
}

// Pillow's precompute_coeffs (libImaging/Resample.c) for the bilinear filter: per output
// position the first input index, the tap count and the taps (antialiased when shrinking).
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = 1.0 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const taps = new Float64Array(outSize * ksize);
  const triangle = (x) => { const a = Math.abs(x); return a < 1.0 ? 1.0 - a : 0.0; };
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterScale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0.0;
    for (let x = 0; x < xmax; x++) {
      const w = triangle((x + xmin - center + 0.5) * ss);
      taps[xx * ksize + x] = w;
      total += w;
    }
    if (total !== 0.0) for (let x = 0; x < xmax; x++) taps[xx * ksize + x] /= total;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, taps };
}

// Pillow's 8-bit taps: fixed point with 22 fraction bits (normalize_coeffs_8bpc).
const PRECISION_BITS = 22;
function fixedTaps(taps) {
  const out = new Float64Array(taps.length);
  const one = 2 ** PRECISION_BITS;
  for (let i = 0; i < taps.length; i++) {
    out[i] = taps[i] < 0 ? Math.trunc(-0.5 + taps[i] * one) : Math.trunc(0.5 + taps[i] * one);
  }
  return out;
}

// Pillow's clip8: the fixed-point sum back to a byte.
const clip8 = (sum) => Math.min(255, Math.max(0, Math.floor(sum / 2 ** PRECISION_BITS)));

// One pass of Pillow's 8-bit resampling along x (`along` = "x") or y, `channels` a pixel.
// Every output value is Pillow's sum: half, then each tap's product in tap order, in
// float64 (exact: the products and sums stay far below 2^53). The vertical pass adds a
// whole row per tap, so memory is read in order; each value's additions keep that order.
function resamplePass8(src, width, height, channels, outSize, along) {
  const horizontal = along === "x";
  const { ksize, bounds, taps } = coefficients(horizontal ? width : height, outSize);
  const k = fixedTaps(taps);
  const outW = horizontal ? outSize : width, outH = horizontal ? height : outSize;
  const out = new Uint8Array(outW * outH * channels);
  const half = 2 ** (PRECISION_BITS - 1);
  if (horizontal) {
    for (let y = 0; y < outH; y++) {
      const row = y * width * channels;
      for (let x = 0; x < outW; x++) {
        const min = bounds[x * 2], n = bounds[x * 2 + 1], base = x * ksize;
        const q = (y * outW + x) * channels;
        for (let c = 0; c < channels; c++) {
          let sum = half;
          for (let t = 0, p = row + min * channels + c; t < n; t++, p += channels) sum += src[p] * k[base + t];
          out[q + c] = clip8(sum);
        }
      }
    }
    return out;
  }
  const span = width * channels;
  const sums = new Float64Array(span);
  for (let y = 0; y < outH; y++) {
    const min = bounds[y * 2], n = bounds[y * 2 + 1], base = y * ksize;
    sums.fill(half);
    for (let t = 0; t < n; t++) {
      const w = k[base + t];
      for (let i = 0, p = (min + t) * span; i < span; i++, p++) sums[i] += src[p] * w;
    }
    for (let i = 0, q = y * span; i < span; i++, q++) out[q] = clip8(sums[i]);
  }
  return out;
}

// Image.resize((outW, outH), BILINEAR) of an 8-bit image: horizontal pass, then vertical,
// each skipped when that side keeps its size (as Pillow's ImagingResampleInner).
export function resizeBilinear8(src, width, height, channels, outW, outH) {
  let pixels = src, w = width;
  if (outW !== width) { pixels = resamplePass8(pixels, w, height, channels, outW, "x"); w = outW; }
  if (outH !== height) pixels = resamplePass8(pixels, w, height, channels, outH, "y");
  return pixels === src ? src.slice() : pixels;
}

// Image.resize of a float32 ("F" mode) image: double taps, float32 stored per pass.
export function resizeBilinearFloat(src, width, height, outW, outH) {
  const pass = (values, w, h, outSize, horizontal) => {
    const { ksize, bounds, taps } = coefficients(horizontal ? w : h, outSize);
    const ow = horizontal ? outSize : w, oh = horizontal ? h : outSize;
    const out = new Float32Array(ow * oh);
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const o = horizontal ? x : y, min = bounds[o * 2], n = bounds[o * 2 + 1];
        let sum = 0.0;
        for (let t = 0; t < n; t++) {
          const v = horizontal ? values[y * w + min + t] : values[(min + t) * w + x];
          sum += v * taps[o * ksize + t];
        }
        out[y * ow + x] = sum;
      }
    }
    return out;
  };
  let values = src, w = width;
  if (outW !== width) { values = pass(values, w, height, outW, true); w = outW; }
  if (outH !== height) values = pass(values, w, height, outH, false);
  return values === src ? src.slice() : values;
}

// preprocess.resize_to_input letterbox placement: {newW, newH, top, left}.
export function letterbox(cropW, cropH, inW, inH) {
  const scale = Math.min(inW / cropW, inH / cropH);
  const newW = Math.max(1, roundHalfEven(cropW * scale));
  const newH = Math.max(1, roundHalfEven(cropH * scale));
  return { newW, newH, top: Math.floor((inH - newH) / 2), left: Math.floor((inW - newW) / 2) };
}

// preprocess.resize_to_input: the crop at the model's input size, uint8 RGB.
export function resizeToInput(rgb, width, height, spec) {
  const [outH, outW] = spec.input_size;
  if (spec.resize === "stretch") return resizeBilinear8(rgb, width, height, 3, outW, outH);
  const { newW, newH, top, left } = letterbox(width, height, outW, outH);
  const resized = resizeBilinear8(rgb, width, height, 3, newW, newH);
  const canvas = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < newH; y++) {
    canvas.set(resized.subarray(y * newW * 3, (y + 1) * newW * 3), ((top + y) * outW + left) * 3);
  }
  return canvas;
}

// preprocess.normalize: HxWx3 uint8 -> 3xHxW float32, (pixel/255 - mean) / std, each step
// rounded to float32 as numpy does.
export function normalize(rgb, spec) {
  const [h, w] = spec.input_size;
  const plane = h * w;
  const out = new Float32Array(3 * plane);
  const mean = spec.mean.map(f32), std = spec.std.map(f32);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      out[c * plane + i] = f32(f32(rgb[i * 3 + c] / 255) - mean[c]) / std[c];
    }
  }
  return out;
}

// Predictor.prepare: {tensor, box} for an RGB frame (box: the crop the model saw).
export function prepare(rgb, width, height, spec, nodule = null, area = null) {
  const box = cropBox(rgb, width, height, spec, nodule, area);
  const cw = box.x1 - box.x0, ch = box.y1 - box.y0;
  const tensor = normalize(resizeToInput(crop(rgb, width, box), cw, ch, spec), spec);
  return { tensor, box };
}

// tensor[:, :, ::-1] of one 3xHxW input (mirror test-time augmentation).
export function mirror(tensor, height, width) {
  const out = new Float32Array(tensor.length);
  for (let row = 0; row < tensor.length / width; row++) {
    const base = row * width;
    for (let x = 0; x < width; x++) out[base + x] = tensor[base + width - 1 - x];
  }
  return out;
}

// predictor.softmax over float64 logits.
export function softmax(logits) {
  const peak = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - peak));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

// heatmap.class_activation_map: weight[k] at every position of the CxHxW feature map,
// negative evidence cut at zero, scaled to [0, 1].
export function classActivationMap(features, channels, fh, fw, weight, k) {
  const plane = fh * fw;
  const cam = new Float32Array(plane);
  for (let c = 0; c < channels; c++) {
    const w = weight[k * channels + c];
    if (w === 0) continue;
    const base = c * plane;
    for (let i = 0; i < plane; i++) cam[i] += w * features[base + i];
  }
  let peak = 0;
  for (let i = 0; i < plane; i++) { if (cam[i] < 0) cam[i] = 0; if (cam[i] > peak) peak = cam[i]; }
  if (peak > 0) for (let i = 0; i < plane; i++) cam[i] /= peak;
  return cam;
}

// heatmap.heatmap_to_image: the model-grid map up to the input size, the letterbox
// padding removed, to the crop's size, placed at the crop in an image-sized map.
export function heatmapToImage(cam, fh, fw, spec, box, width, height) {
  const [inH, inW] = spec.input_size;
  let grid = resizeBilinearFloat(cam, fw, fh, inW, inH), gw = inW, gh = inH;
  const cw = box.x1 - box.x0, ch = box.y1 - box.y0;
  if (spec.resize === "letterbox") {
    const { newW, newH, top, left } = letterbox(cw, ch, inW, inH);
    const cut = new Float32Array(newW * newH);
    for (let y = 0; y < newH; y++) {
      cut.set(grid.subarray((top + y) * inW + left, (top + y) * inW + left + newW), y * newW);
    }
    grid = cut; gw = newW; gh = newH;
  }
  const placed = resizeBilinearFloat(grid, gw, gh, cw, ch);
  const out = new Float32Array(width * height);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      out[(box.y0 + y) * width + box.x0 + x] = Math.min(1, Math.max(0, placed[y * cw + x]));
    }
  }
  return out;
}

// heatmap.colorize, as RGBA whose alpha is the heat itself: drawn over the image with
// CSS opacity `o`, each pixel blends with weight o * heat, as heatmap.overlay_heatmap.
// No heat (most of the frame: outside the crop, and where the evidence is negative) is
// the first anchor, transparent, written four bytes at a time.
export function colorize(heat, anchors) {
  const out = new Uint8ClampedArray(heat.length * 4);
  const last = anchors.length - 1;
  const flat = anchors.flat();
  const none = new Uint8ClampedArray([flat[0], flat[1], flat[2], 0]);
  new Uint32Array(out.buffer).fill(new Uint32Array(none.buffer)[0]);
  for (let i = 0; i < heat.length; i++) {
    const v = Math.min(1, Math.max(0, heat[i]));
    if (!(v > 0)) continue;
    const x = v * last;
    const lo = Math.min(last - 1, Math.floor(x)), t = x - lo;
    const a = lo * 3, o = i * 4;
    out[o] = Math.round(flat[a] + (flat[a + 3] - flat[a]) * t);
    out[o + 1] = Math.round(flat[a + 1] + (flat[a + 4] - flat[a + 1]) * t);
    out[o + 2] = Math.round(flat[a + 2] + (flat[a + 5] - flat[a + 2]) * t);
    out[o + 3] = Math.round(v * 255);
  }
  return out;
}
