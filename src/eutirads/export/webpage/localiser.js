// The browser's copy of eutirads.inference.localiser: the localiser's probability map
// placed on the image, and the pure functions that turn it into the prediction's
// `nodule` (box, regions, axes, contour). Each function names the Python one it follows;
// a browser test holds them to it. Images are row-major; boxes {x0, y0, x1, y1} or
// [x0, y0, x1, y1] as in Python, x1/y1 exclusive.
import { letterbox, resizeBilinearFloat, roundHalfEven } from "./pipeline.js";

const f32 = Math.fround;

// Localiser.probability's sigmoid, in float32 as numpy computes it.
export function sigmoid(logits) {
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = 1 / f32(1 + f32(Math.exp(-logits[i])));
  return out;
}

// localiser.probability_to_image: the model-grid map placed back on the input image.
export function probabilityToImage(prob, gh, gw, spec, box, width, height) {
  const [inH, inW] = spec.input_size;
  let grid = prob, w = gw, h = gh;
  if (gh !== inH || gw !== inW) { grid = resizeBilinearFloat(prob, gw, gh, inW, inH); w = inW; h = inH; }
  const cw = box.x1 - box.x0, ch = box.y1 - box.y0;
  if (spec.resize === "letterbox") {
    const { newW, newH, top, left } = letterbox(cw, ch, inW, inH);
    const cut = new Float32Array(newW * newH);
    for (let y = 0; y < newH; y++) cut.set(grid.subarray((top + y) * w + left, (top + y) * w + left + newW), y * newW);
    grid = cut; w = newW; h = newH;
  }
  const placed = resizeBilinearFloat(grid, w, h, cw, ch);
  const out = new Float32Array(width * height);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) out[(box.y0 + y) * width + box.x0 + x] = Math.min(1, Math.max(0, placed[y * cw + x]));
  }
  return out;
}

// localiser._image_min_region: a grid pixel of the model covers crop area / grid area.
export function imageMinRegion(minRegionPx, spec, box) {
  const [inH, inW] = spec.input_size;
  return Math.max(1, roundHalfEven(minRegionPx * (box.x1 - box.x0) * (box.y1 - box.y0) / (inH * inW)));
}

// scipy.ndimage.label with a 3x3 structure (8-connected), numbered in raster order.
function label8(mask, width, height) {
  const labels = new Int32Array(mask.length);
  const sizes = [0];
  const stack = new Int32Array(mask.length);
  let count = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    count += 1;
    let sp = 0, size = 0;
    stack[sp++] = start;
    labels[start] = count;
    while (sp > 0) {
      const i = stack[--sp];
      const x = i % width, y = (i - x) / width;
      size += 1;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width || (dx === 0 && dy === 0)) continue;
          const j = yy * width + xx;
          if (mask[j] && !labels[j]) { labels[j] = count; stack[sp++] = j; }
        }
      }
    }
    sizes.push(size);
  }
  return { labels, count, sizes };
}

// scipy.ndimage.binary_fill_holes (default structure): background not 4-connected to the
// border becomes foreground. Works inside the region's box, padded by one pixel.
function fillHoles(region, width, height, box) {
  const x0 = Math.max(0, box[0] - 1), y0 = Math.max(0, box[1] - 1);
  const x1 = Math.min(width, box[2] + 1), y1 = Math.min(height, box[3] + 1);
  const w = x1 - x0, h = y1 - y0;
  const outside = new Uint8Array(w * h);
  const stack = [];
  const seed = (x, y) => {
    const i = y * w + x;
    if (!outside[i] && !region[(y0 + y) * width + x0 + x]) { outside[i] = 1; stack.push(i); }
  };
  // The frame's own edge is the border; pixels outside the box are background reaching it.
  for (let x = 0; x < w; x++) { seed(x, 0); seed(x, h - 1); }
  for (let y = 0; y < h; y++) { seed(0, y); seed(w - 1, y); }
  while (stack.length) {
    const i = stack.pop();
    const x = i % w, y = (i - x) / w;
    if (x > 0) seed(x - 1, y);
    if (x + 1 < w) seed(x + 1, y);
    if (y > 0) seed(x, y - 1);
    if (y + 1 < h) seed(x, y + 1);
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if (!outside[y * w + x]) region[(y0 + y) * width + x0 + x] = 1;
  }
}

// Moore-neighbour directions, clockwise on screen (y down) starting west.
const DIRS = [[-1, 0], [-1, -1], [0, -1], [1, -1], [1, 0], [1, 1], [0, 1], [-1, 1]];

// localiser.trace_contour: the outer boundary of one region as [x, y] in order.
export function traceContour(region, width, height) {
  const on = (x, y) => x >= 0 && y >= 0 && x < width && y < height && region[y * width + x] === 1;
  let start = null;
  for (let i = 0; i < region.length && !start; i++) if (region[i]) start = [i % width, Math.floor(i / width)];
  if (!start) return [];
  const contour = [start];
  let current = start, back = 0, firstMove = null;
  for (let n = 0; n < 4 * region.length + 8; n++) {
    let found = null;
    for (let step = 0; step < 8; step++) {
      const d = (back + 1 + step) % 8;
      const nx = current[0] + DIRS[d][0], ny = current[1] + DIRS[d][1];
      if (on(nx, ny)) { found = [[nx, ny], d]; break; }
    }
    if (!found) break;  // an isolated pixel
    const [next, d] = found;
    if (firstMove === null) firstMove = [next, d];
    else if (current[0] === start[0] && current[1] === start[1] && next[0] === firstMove[0][0]
             && next[1] === firstMove[0][1] && d === firstMove[1]) {
      contour.pop();  // back at the start, moving as the first time: closed
      break;
    }
    back = (d + 4) % 8;
    current = next;
    contour.push(current);
  }
  return contour;
}

// localiser._simplify: straight runs reduced to their ends, then at most `limit` points.
export function simplify(points, limit = 200) {
  if (points.length < 4) return points;
  const n = points.length;
  let kept = [];
  for (let i = 0; i < n; i++) {
    const a = points[(i - 1 + n) % n], p = points[i], b = points[(i + 1) % n];
    if (p[0] - a[0] !== b[0] - p[0] || p[1] - a[1] !== b[1] - p[1]) kept.push(p);
  }
  if (kept.length > limit) {
    const step = kept.length / limit;
    kept = Array.from({ length: limit }, (_, i) => kept[Math.floor(i * step)]);
  }
  return kept.length ? kept : points.slice(0, 1);
}

// The convex hull's vertices (Andrew's monotone chain, collinear points dropped), as
// scipy's ConvexHull(...).vertices gives them up to order.
function hull(points) {
  const pts = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [], upper = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  const out = lower.slice(0, -1).concat(upper.slice(0, -1));
  return out.length >= 3 ? out : pts;  // collinear: keep them all (a thin line)
}

// localiser.region_axes: (long, short) axis from the pixel centres, calipers-style.
export function regionAxes(points, scale = [1, 1]) {
  if (!points.length) return [0, 0];
  const pixel = (scale[0] + scale[1]) / 2;
  const seen = new Set();
  let pts = [];
  for (const [x, y] of points) {
    const key = `${x},${y}`;
    if (!seen.has(key)) { seen.add(key); pts.push([x * scale[0], y * scale[1]]); }
  }
  pts = hull(pts);
  let best = -1, bi = 0, bj = 0;
  for (let i = 0; i < pts.length; i++) {
    for (let j = 0; j < pts.length; j++) {
      const d = Math.hypot(pts[i][0] - pts[j][0], pts[i][1] - pts[j][1]);
      if (d > best) { best = d; bi = i; bj = j; }
    }
  }
  if (best === 0) return [pixel, pixel];
  const dir = [(pts[bj][0] - pts[bi][0]) / best, (pts[bj][1] - pts[bi][1]) / best];
  const normal = [-dir[1], dir[0]];
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { const v = p[0] * normal[0] + p[1] * normal[1]; lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return [best + pixel, hi - lo + pixel];
}

const round = (v, digits) => { const f = 10 ** digits; return roundHalfEven(v * f) / f; };

// localiser._region
function describe(region, prob, width, height, spacing) {
  let x0 = width, y0 = height, x1 = -1, y1 = -1, area = 0, total = 0;
  const centres = [];
  for (let i = 0; i < region.length; i++) {
    if (!region[i]) continue;
    const x = i % width, y = (i - x) / width;
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    area += 1;
    total += prob[i];
    centres.push([x, y]);
  }
  const [longPx, shortPx] = regionAxes(centres);
  let longMm = null, shortMm = null;
  if (spacing) [longMm, shortMm] = regionAxes(centres, spacing).map((v) => round(v, 2));
  return { box: [x0, y0, x1 + 1, y1 + 1], area_px: area, score: round(total / area, 4),
           long_axis_px: round(longPx, 1), short_axis_px: round(shortPx, 1),
           long_axis_mm: longMm, short_axis_mm: shortMm,
           contour: simplify(traceContour(region, width, height)) };
}

// localiser.nodule_from_mask: {mask 0/255, nodule or null} from the thresholded map;
// regions whose mean probability is below minScore are dropped.
export function noduleFromMask(binary, prob, width, height, minRegionPx, spacing = null,
                               minScore = 0) {
  const { labels, count, sizes } = label8(binary, width, height);
  const mask = new Uint8Array(binary.length);
  if (count === 0) return { mask, nodule: null };
  const order = Array.from({ length: count }, (_, i) => i + 1)
    .sort((a, b) => sizes[b] - sizes[a] || a - b)
    .filter((k) => sizes[k] >= Math.max(1, minRegionPx));
  if (!order.length) return { mask, nodule: null };
  const regions = [];
  for (const k of order) {
    const region = new Uint8Array(binary.length);
    let bx0 = width, by0 = height, bx1 = 0, by1 = 0;
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] !== k) continue;
      region[i] = 1;
      const x = i % width, y = (i - x) / width;
      bx0 = Math.min(bx0, x); by0 = Math.min(by0, y); bx1 = Math.max(bx1, x + 1); by1 = Math.max(by1, y + 1);
    }
    // Holes inside a nodule (a cyst's wall outlined as a ring) belong to it.
    fillHoles(region, width, height, [bx0, by0, bx1, by1]);
    const described = describe(region, prob, width, height, spacing);
    if (described.score < minScore) continue;
    for (let i = 0; i < region.length; i++) if (region[i]) mask[i] = 255;
    regions.push(described);
  }
  if (!regions.length) return { mask, nodule: null };
  let total = 0, n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) { total += prob[i]; n += 1; }
  const box = [Math.min(...regions.map((r) => r.box[0])), Math.min(...regions.map((r) => r.box[1])),
               Math.max(...regions.map((r) => r.box[2])), Math.max(...regions.map((r) => r.box[3]))];
  return { mask, nodule: { box, score: round(total / n, 4), regions } };
}
