// The known label map of the viewer test: two findings drawn on several slices of a CT series,
// and its NRRD file in the series' patient coordinates (what `unibiomed results write --masks`
// reads, seg-writer/label_map_file.h).
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');

/**
 * Two findings around the middle of the series, overlapping in slice range so that some
 * slices carry both:
 *   label 1: a lesion in the liver (patient right, the image's left): a ball, its radius
 *            shrinking towards its ends;
 *   label 2: a crescent (a disk less an offset disk; not convex, so a bounding shape cannot
 *            pass for it) on the left kidney (the image's right).
 * Positions are fractions of the image, placed on the liver and left kidney of the sample CT
 * phantom (samples/phantom.cpp, make_ct_abdomen: liver centred at (-62, -5) mm, left kidney at
 * (72, 50) mm from the image centre, 0.7 mm pixels).
 * @returns {{rows, columns, slices: (Uint8Array|null)[], labels: number[]}}
 */
function makeLabelMap(series) {
  const { rows, columns } = series;
  const n = series.slices.length;
  if (n < 8) throw new Error(`the viewer test needs a series of at least 8 slices (got ${n})`);
  const mid = Math.floor(n / 2);
  const slices = new Array(n).fill(null);
  const put = (k, label, inside) => {
    if (!slices[k]) slices[k] = new Uint8Array(rows * columns);
    const s = slices[k];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        if (inside(r, c)) s[r * columns + c] = label;
      }
    }
  };
  const scale = columns / 512;
  // Label 1: ball over 6 slices.
  const ball = { row: 0.485 * rows, col: 0.31 * columns, radius: 34 * scale, first: mid - 3, count: 6 };
  for (let i = 0; i < ball.count; i++) {
    const t = (i + 0.5) / ball.count - 0.5; // -0.42 .. 0.42
    const r = ball.radius * Math.sqrt(1 - (1.6 * t) ** 2);
    put(ball.first + i, 1, (y, x) => (y - ball.row) ** 2 + (x - ball.col) ** 2 <= r * r);
  }
  // Label 2: crescent over 5 slices, overlapping label 1's range.
  const cres = { row: 0.64 * rows, col: 0.70 * columns, radius: 26 * scale, first: mid - 1, count: 5 };
  for (let i = 0; i < cres.count; i++) {
    const R = cres.radius * (1 - 0.08 * Math.abs(i - 2));
    put(cres.first + i, 2, (y, x) => {
      const inOuter = (y - cres.row) ** 2 + (x - cres.col) ** 2 <= R * R;
      const inBite = (y - cres.row + 0.45 * R) ** 2 + (x - cres.col - 0.35 * R) ** 2 <= (0.75 * R) ** 2;
      return inOuter && !inBite;
    });
  }
  return { rows, columns, slices, labels: [1, 2] };
}

/**
 * Writes the label map as an attached-header NRRD (uint8, raw) in LPS patient space: axis 0
 * along the row direction (columns), axis 1 along the column direction (rows), axis 2 from the
 * first to the last slice in slice order (PS3.3 C.7.6.2.1.1; the NRRD "space directions" of
 * each index axis are its step in mm).
 */
function writeNrrd(file, series, labelMap) {
  const { rows, columns } = labelMap;
  const n = series.slices.length;
  const [rowSpacing, columnSpacing] = series.pixelSpacing;
  const p0 = series.slices[0].imagePositionPatient;
  const pn = series.slices[n - 1].imagePositionPatient;
  const step = p0.map((v, i) => (pn[i] - v) / (n - 1));
  const vec = (v) => `(${v.map((x) => Number(x.toFixed(6))).join(',')})`;
  const header = [
    'NRRD0004',
    '# label map of the UniBiomed viewer test: 0 background, k = finding k',
    'type: uint8',
    'dimension: 3',
    'space: left-posterior-superior',
    `sizes: ${columns} ${rows} ${n}`,
    `space directions: ${vec(series.rowCosine.map((x) => x * columnSpacing))} ${vec(
      series.columnCosine.map((x) => x * rowSpacing),
    )} ${vec(step)}`,
    'kinds: domain domain domain',
    'endian: little',
    'encoding: raw',
    `space origin: ${vec(p0)}`,
    '',
    '',
  ].join('\n');
  const data = Buffer.alloc(rows * columns * n);
  labelMap.slices.forEach((s, k) => {
    if (s) data.set(s, k * rows * columns);
  });
  fs.writeFileSync(file, Buffer.concat([Buffer.from(header, 'ascii'), data]));
}

module.exports = { makeLabelMap, writeNrrd };
