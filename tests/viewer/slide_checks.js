// The pixel comparisons of the slide viewer test: screenshots of dicom-microscopy-viewer's map
// against the slide level's own pixels and the SEG's masks, with every viewport pixel mapped to
// the total pixel matrix through the map's view (slide_page.js viewState). Pure functions on
// decoded images; slide_viewer_test.js takes the screenshots and prints the checks.
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const zlib = require('zlib');

/**
 * Decodes the PNGs Chromium writes (8-bit RGB or RGBA, not interlaced) into
 * {width, height, rgba: Uint8Array}.
 */
function decodePng(buffer) {
  if (buffer.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let at = 8;
  let width = 0, height = 0, bitDepth = 0, colourType = 0, interlace = 0;
  const idat = [];
  while (at < buffer.length) {
    const length = buffer.readUInt32BE(at);
    const type = buffer.toString('latin1', at + 4, at + 8);
    const data = buffer.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      bitDepth = data[8];
      colourType = data[9];
      interlace = data[12];
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    at += 12 + length;
  }
  if (bitDepth !== 8 || (colourType !== 2 && colourType !== 6) || interlace !== 0) {
    throw new Error(`PNG of bit depth ${bitDepth}, colour type ${colourType}, interlace ${interlace}: not decoded here`);
  }
  const channels = colourType === 6 ? 4 : 3;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = new Uint8Array(width * height * channels);
  const paeth = (a, b, c) => {
    const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
  };
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    for (let x = 0; x < stride; x++) {
      const v = raw[src + x];
      const a = x >= channels ? out[row + x - channels] : 0;
      const b = y > 0 ? out[row - stride + x] : 0;
      const c = x >= channels && y > 0 ? out[row - stride + x - channels] : 0;
      let p;
      switch (filter) {
        case 0: p = 0; break;
        case 1: p = a; break;
        case 2: p = b; break;
        case 3: p = (a + b) >> 1; break;
        case 4: p = paeth(a, b, c); break;
        default: throw new Error(`PNG filter ${filter}`);
      }
      out[row + x] = (v + p) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    rgba[i * 4] = out[j];
    rgba[i * 4 + 1] = out[j + 1];
    rgba[i * 4 + 2] = out[j + 2];
    rgba[i * 4 + 3] = channels === 4 ? out[j + 3] : 255;
  }
  return { width, height, rgba };
}

/**
 * For each viewport pixel, the pixel of a total pixel matrix under its centre:
 * Int32Array(width * height) of row * totalColumns + column, or -1 outside the matrix.
 * `view.pixelToMap` maps viewport pixels to map coordinates, which dicom-microscopy-viewer keeps
 * as (column, -(row + 1)) on the base level (pyramid.js: extent [0, -(rows + 1), columns, -1]);
 * `scale` is the matrix's pixels per base-level pixel (0.5 for the level of half the columns).
 */
function viewportToMatrix(view, width, height, matrix, scale) {
  const { origin, dx, dy } = view.pixelToMap;
  const out = new Int32Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const mx = origin[0] + (x + 0.5) * dx[0] + (y + 0.5) * dy[0];
      const my = origin[1] + (x + 0.5) * dx[1] + (y + 0.5) * dy[1];
      const c = Math.floor(mx * scale);
      const r = Math.floor((-1 - my) * scale);
      out[y * width + x] = c >= 0 && r >= 0 && c < matrix.totalColumns && r < matrix.totalRows ? r * matrix.totalColumns + c : -1;
    }
  }
  return out;
}

/** The 8-neighbourhood dilation (grow) or erosion (shrink) of a mask, `steps` times. */
function morph(mask, columns, rows, steps, grow) {
  let current = mask;
  for (let s = 0; s < steps; s++) {
    const next = new Uint8Array(current.length);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        let any = 0, all = 1;
        for (let dr = -1; dr <= 1; dr++) {
          for (let dc = -1; dc <= 1; dc++) {
            const rr = r + dr, cc = c + dc;
            const v = rr >= 0 && cc >= 0 && rr < rows && cc < columns ? current[rr * columns + cc] : 0;
            any |= v;
            all &= v;
          }
        }
        next[r * columns + c] = grow ? any : all;
      }
    }
    current = next;
  }
  return current;
}

/**
 * How the viewport shows the slide level: for the viewport pixels at least `margin` matrix pixels
 * inside the matrix, the mean over pixels and channels of |screen - level| and the share of pixels
 * whose largest channel difference exceeds `far`.
 */
function compareWithLevel(shot, lookup, level, { far = 48 } = {}) {
  let n = 0, sum = 0, farPixels = 0;
  for (let i = 0; i < lookup.length; i++) {
    const p = lookup[i];
    if (p < 0) continue;
    const r = Math.floor(p / level.totalColumns), c = p % level.totalColumns;
    if (r < 1 || c < 1 || r >= level.totalRows - 1 || c >= level.totalColumns - 1) continue; // edge pixels blend with the background
    let worst = 0;
    for (let k = 0; k < 3; k++) {
      const d = Math.abs(shot.rgba[i * 4 + k] - level.rgb[p * 3 + k]);
      sum += d;
      if (d > worst) worst = d;
    }
    if (worst > far) farPixels++;
    n++;
  }
  return { pixels: n, meanDifference: n ? sum / (3 * n) : Infinity, farShare: n ? farPixels / n : 1 };
}

/** Viewport pixels whose colour changed by more than `threshold` (|dR| + |dG| + |dB|). */
function changedPixels(before, after, threshold) {
  const out = new Uint8Array(before.width * before.height);
  for (let i = 0; i < out.length; i++) {
    const d = Math.abs(before.rgba[i * 4] - after.rgba[i * 4]) + Math.abs(before.rgba[i * 4 + 1] - after.rgba[i * 4 + 1]) + Math.abs(before.rgba[i * 4 + 2] - after.rgba[i * 4 + 2]);
    out[i] = d > threshold ? 1 : 0;
  }
  return out;
}

/**
 * Compares the pixels an overlay changed with a mask on the matrix:
 *   inside: share of changed viewport pixels over the mask grown by `slack` matrix pixels;
 *   covered: share of the mask's core (shrunk by `slack`, or the mask itself when that leaves
 *   nothing) whose viewport pixels changed;
 *   misplacedPerBoundary: the pixels wrong either way, per pixel of the mask's boundary.
 */
function compareWithMask(changed, lookup, matrix, mask, { slack = 1 } = {}) {
  const { totalColumns: columns, totalRows: rows } = matrix;
  const grown = morph(mask, columns, rows, slack, true);
  let core = morph(mask, columns, rows, slack, false);
  if (!core.some((v) => v)) core = mask;
  let changedCount = 0, changedInside = 0;
  const coreSeen = new Uint8Array(mask.length); // core pixels shown on the viewport
  const coreHit = new Uint8Array(mask.length); // ... of which a viewport pixel changed
  for (let i = 0; i < lookup.length; i++) {
    const p = lookup[i];
    if (changed[i]) {
      changedCount++;
      if (p >= 0 && grown[p]) changedInside++;
    }
    if (p >= 0 && core[p]) {
      coreSeen[p] = 1;
      if (changed[i]) coreHit[p] = 1;
    }
  }
  let seen = 0, hit = 0, boundary = 0;
  for (let p = 0; p < mask.length; p++) {
    seen += coreSeen[p];
    hit += coreHit[p];
    if (!mask[p]) continue;
    const r = Math.floor(p / columns), c = p % columns;
    if (r === 0 || c === 0 || r === rows - 1 || c === columns - 1 || !mask[p - 1] || !mask[p + 1] || !mask[p - columns] || !mask[p + columns]) boundary++;
  }
  // The misplaced pixels (drawn off the grown mask, or left out of the core) per boundary pixel
  // of the mask: independent of the mask's size, about s - 1 for an overlay moved by s pixels.
  const misplaced = changedCount - changedInside + (seen - hit);
  return {
    changed: changedCount,
    inside: changedCount ? changedInside / changedCount : 0,
    corePixels: seen,
    covered: seen ? hit / seen : 0,
    boundary,
    misplacedPerBoundary: boundary ? misplaced / boundary : Infinity,
  };
}

/** The mask turned by 180 degrees about the matrix centre (the control of the overlay check). */
function rotate180(mask) {
  const out = new Uint8Array(mask.length);
  for (let p = 0; p < mask.length; p++) out[mask.length - 1 - p] = mask[p];
  return out;
}

/**
 * The viewport position of a point on the matrix (continuous pixel coordinates, (0, 0) the
 * top-left corner of the first pixel): the inverse of viewportToMatrix's mapping.
 */
function matrixToViewport(view, scale, column, row) {
  const { origin, dx, dy } = view.pixelToMap;
  const mx = column / scale - origin[0];
  const my = -1 - row / scale - origin[1];
  const det = dx[0] * dy[1] - dx[1] * dy[0];
  return [(mx * dy[1] - my * dy[0]) / det, (dx[0] * my - dx[1] * mx) / det];
}

module.exports = { decodePng, viewportToMatrix, morph, compareWithLevel, changedPixels, compareWithMask, rotate180, matrixToViewport };
