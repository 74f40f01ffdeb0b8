// The browser's copy of eutirads.inference.measured.measure_inputs: the three inputs of the
// bundle's measured-descriptors graph for one image. A browser test holds it to Python
// bit for bit. Boxes {x0, y0, x1, y1}, x1/y1 exclusive; images row-major.
import { crop, resizeBilinear8, resizeBilinearFloat } from "./pipeline.js";

const f32 = Math.fround;

// rgb: the frame (H x W x 3 bytes); prob: the localiser's probability at the frame's size
// (Float32Array H x W); box: the localiser's crop box; grid: [gridH, gridW].
// -> {gray, prob, scale}: Float32Arrays of 1x1xHxW, 1x1xHxW and 1x2.
export function measureInputs(rgb, width, height, prob, box, grid) {
  const [gh, gw] = grid;
  const cw = box.x1 - box.x0, ch = box.y1 - box.y0;
  // the image area resized as Pillow's BILINEAR on 8-bit RGB, then numpy's float32 mean
  // of the three channels (exact: small integers) / 255
  const rgbGrid = resizeBilinear8(crop(rgb, width, box), cw, ch, 3, gw, gh);
  const gray = new Float32Array(gh * gw);
  for (let i = 0, j = 0; i < gray.length; i++, j += 3) {
    gray[i] = f32(f32((rgbGrid[j] + rgbGrid[j + 1] + rgbGrid[j + 2]) / 3) / 255);
  }
  // the probability map's crop, resized as Pillow's BILINEAR on an "F" image
  const cut = new Float32Array(cw * ch);
  for (let y = 0; y < ch; y++) cut.set(prob.subarray((box.y0 + y) * width + box.x0, (box.y0 + y) * width + box.x1), y * cw);
  const probGrid = resizeBilinearFloat(cut, cw, ch, gw, gh);
  const scale = new Float32Array([ch / gh, cw / gw]);
  return { gray, prob: probGrid, scale };
}
