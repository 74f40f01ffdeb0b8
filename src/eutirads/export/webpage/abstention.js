// The browser's copy of eutirads.inference.abstention: calibration, the
// out-of-distribution distance and the checks that decide an abstention. Numbers come from site.json (the bundle's and the module's own constants).

// abstention.apply_temperature: softmax(log p / T); T = 1 leaves p as it is.
export function applyTemperature(proba, temperature) {
  if (temperature === 1) return proba.slice();
  const z = proba.map((p) => Math.log(Math.max(p, 1e-12)) / temperature);
  const peak = Math.max(...z);
  const e = z.map((v) => Math.exp(v - peak));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

// abstention.not_ultrasound: mostly coloured (a photo) or mostly white (a drawing).
export function notUltrasound(rgb, width, height, limits) {
  const step = Math.max(1, Math.trunc(Math.sqrt(width * height / 250000)));
  let count = 0, coloured = 0, white = 0;
  for (let y = 0; y < height; y += step) {
    for (let x = 0; x < width; x += step) {
      const p = (y * width + x) * 3;
      const hi = Math.max(rgb[p], rgb[p + 1], rgb[p + 2]);
      const lo = Math.min(rgb[p], rgb[p + 1], rgb[p + 2]);
      count += 1;
      if (hi - lo > limits.colour_spread) coloured += 1;
      if (lo >= 250) white += 1;
    }
  }
  return coloured / count > limits.coloured_fraction || white / count > limits.white_fraction;
}

// IEEE half floats (the OOD reference is stored as float16) to float32.
export function halfToFloat(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i], sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    out[i] = exp === 0 ? sign * 2 ** -14 * (frac / 1024)
      : exp === 31 ? (frac ? NaN : sign * Infinity)
      : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

// abstention.pooled + knn_distance: cosine distance of one image's pooled features to its
// k-th nearest reference row (rows pooled and normalised already).
export function knnDistance(features, channels, plane, reference, rows, k) {
  const q = new Float64Array(channels);
  let norm = 0;
  for (let c = 0; c < channels; c++) {
    let s = 0;
    for (let i = 0; i < plane; i++) s += features[c * plane + i];
    q[c] = Math.fround(s / plane);
    norm += q[c] * q[c];
  }
  norm = Math.max(Math.sqrt(norm), 1e-12);
  const sims = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += (q[c] / norm) * reference[r * channels + c];
    sims[r] = s;
  }
  sims.sort();
  const kk = Math.min(k, rows);
  return 1 - sims[rows - kk];
}
