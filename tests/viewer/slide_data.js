// What the slide viewer test knows independently of the viewer, read from the DICOM files with
// dcmjs: the pixels of one pyramid level of the slide (VL Whole Slide Microscopy Image, TILED_FULL,
// uncompressed RGB, as `unibiomed samples write` makes it), the masks of a tiled SEG
// (TILED_SPARSE: each frame placed by its Plane Position (Slide) on the total pixel matrix) and
// the SR's findings (slide_sr.js).
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const dcmjs = require('dcmjs');
const { readFindings } = require('./slide_sr.js');

if (dcmjs.log && typeof dcmjs.log.setLevel === 'function') dcmjs.log.setLevel('error');

const list = (v) => (v == null ? [] : Array.isArray(v) ? v : [v]);

/** dcmjs' naturalized data set of a DICOM file, and its pixel data as one Uint8Array. */
function readDataset(file) {
  const bytes = fs.readFileSync(file);
  const message = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const transferSyntax = message.meta['00020010'] && message.meta['00020010'].Value[0];
  const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(message.dict);
  let pixels = null;
  if (dataset.PixelData) {
    const parts = list(dataset.PixelData).map((b) => new Uint8Array(b));
    const length = parts.reduce((n, p) => n + p.length, 0);
    pixels = new Uint8Array(length);
    let at = 0;
    for (const p of parts) {
      pixels.set(p, at);
      at += p.length;
    }
  }
  return { dataset, pixels, transferSyntax };
}

const NATIVE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

/** Pixel Spacing of a multi-frame image: [between rows, between columns] in mm. */
function pixelSpacing(ds) {
  const shared = list(ds.SharedFunctionalGroupsSequence)[0] || {};
  const measures = list(shared.PixelMeasuresSequence)[0] || {};
  return list(measures.PixelSpacing).map(Number);
}

/** The geometry a viewer places a total pixel matrix by (PS3.3 C.8.12.4, C.8.12.9). */
function geometry(ds) {
  const origin = list(ds.TotalPixelMatrixOriginSequence)[0] || {};
  return {
    sopInstanceUID: ds.SOPInstanceUID,
    frameOfReferenceUID: ds.FrameOfReferenceUID,
    totalColumns: Number(ds.TotalPixelMatrixColumns),
    totalRows: Number(ds.TotalPixelMatrixRows),
    columns: Number(ds.Columns),
    rows: Number(ds.Rows),
    pixelSpacing: pixelSpacing(ds),
    offset: [Number(origin.XOffsetInSlideCoordinateSystem), Number(origin.YOffsetInSlideCoordinateSystem)],
    orientation: list(ds.ImageOrientationSlide).map(Number),
  };
}

/**
 * One pyramid level of the slide as an RGB image of its total pixel matrix:
 * {...geometry, rgb: Uint8Array(totalRows * totalColumns * 3)}. Tiles in TILED_FULL order
 * (row by row of tiles, PS3.3 C.8.12.4.1.3); only uncompressed 8-bit RGB is read.
 */
function readSlideLevel(file) {
  const { dataset: ds, pixels, transferSyntax } = readDataset(file);
  const g = geometry(ds);
  if (!NATIVE.has(transferSyntax) || ds.SamplesPerPixel !== 3 || ds.BitsAllocated !== 8 || ds.PlanarConfiguration) {
    throw new Error(`${file}: only uncompressed 8-bit interleaved RGB levels are read here (${transferSyntax})`);
  }
  if (ds.DimensionOrganizationType !== 'TILED_FULL') throw new Error(`${file}: not TILED_FULL`);
  const tilesAcross = Math.ceil(g.totalColumns / g.columns);
  const frameBytes = g.rows * g.columns * 3;
  const rgb = new Uint8Array(g.totalRows * g.totalColumns * 3);
  for (let f = 0; f < Number(ds.NumberOfFrames); f++) {
    const r0 = Math.floor(f / tilesAcross) * g.rows;
    const c0 = (f % tilesAcross) * g.columns;
    for (let r = 0; r < g.rows && r0 + r < g.totalRows; r++) {
      const width = Math.min(g.columns, g.totalColumns - c0);
      const src = f * frameBytes + r * g.columns * 3;
      rgb.set(pixels.subarray(src, src + width * 3), ((r0 + r) * g.totalColumns + c0) * 3);
    }
  }
  return { ...g, rgb };
}

/**
 * The segments of a tiled SEG on its total pixel matrix:
 * {...geometry, segments: Map(segmentNumber -> {label, trackingUID, mask: Uint8Array(totalRows *
 *  totalColumns), pixels, box: {minColumn, maxColumn, minRow, maxRow} | null}), union: Uint8Array}.
 * Frames are bit-packed continuously for BINARY (LSB first, PS3.5 8.1.1), one byte a pixel for
 * FRACTIONAL (a pixel counts when its value is above half the maximum).
 */
function readSegmentation(file) {
  const { dataset: ds, pixels, transferSyntax } = readDataset(file);
  if (!NATIVE.has(transferSyntax)) throw new Error(`${file}: only uncompressed SEG pixel data is read here (${transferSyntax})`);
  const g = geometry(ds);
  const size = g.totalRows * g.totalColumns;
  const segments = new Map();
  for (const item of list(ds.SegmentSequence)) {
    segments.set(Number(item.SegmentNumber), { label: item.SegmentLabel, trackingUID: item.TrackingUID || null, mask: new Uint8Array(size), pixels: 0, box: null });
  }
  const union = new Uint8Array(size);
  const binary = ds.SegmentationType === 'BINARY';
  const threshold = binary ? 0 : Number(ds.MaximumFractionalValue || 255) / 2;
  const shared = list(ds.SharedFunctionalGroupsSequence)[0] || {};
  const frames = list(ds.PerFrameFunctionalGroupsSequence);
  const framePixels = g.rows * g.columns;
  frames.forEach((frame, f) => {
    const identification = list(frame.SegmentIdentificationSequence)[0] || list(shared.SegmentIdentificationSequence)[0];
    const segment = segments.get(Number(identification.ReferencedSegmentNumber));
    if (!segment) throw new Error(`${file}: frame ${f + 1} names segment ${identification.ReferencedSegmentNumber}, which is not in the Segment Sequence`);
    const position = list(frame.PlanePositionSlideSequence)[0];
    const r0 = Number(position.RowPositionInTotalImagePixelMatrix) - 1;
    const c0 = Number(position.ColumnPositionInTotalImagePixelMatrix) - 1;
    for (let p = 0; p < framePixels; p++) {
      const index = f * framePixels + p;
      const on = binary ? (pixels[index >> 3] >> (index & 7)) & 1 : pixels[index] > threshold;
      if (!on) continue;
      const r = r0 + Math.floor(p / g.columns);
      const c = c0 + (p % g.columns);
      if (r < 0 || c < 0 || r >= g.totalRows || c >= g.totalColumns) continue;
      segment.mask[r * g.totalColumns + c] = 1;
      union[r * g.totalColumns + c] = 1;
    }
  });
  for (const segment of segments.values()) {
    let minColumn = Infinity, maxColumn = -Infinity, minRow = Infinity, maxRow = -Infinity, n = 0;
    for (let r = 0; r < g.totalRows; r++) {
      for (let c = 0; c < g.totalColumns; c++) {
        if (!segment.mask[r * g.totalColumns + c]) continue;
        n++;
        if (c < minColumn) minColumn = c;
        if (c > maxColumn) maxColumn = c;
        if (r < minRow) minRow = r;
        if (r > maxRow) maxRow = r;
      }
    }
    segment.pixels = n;
    segment.box = n ? { minColumn, maxColumn, minRow, maxRow } : null;
  }
  return {
    ...g,
    seriesInstanceUID: ds.SeriesInstanceUID,
    segmentationType: ds.SegmentationType,
    dimensionOrganizationType: ds.DimensionOrganizationType,
    segments,
    union,
  };
}

/** The findings of an SR file (slide_sr.js readFindings on dcmjs' naturalized data set). */
function readSrFindings(file) {
  const { dataset } = readDataset(file);
  return { seriesInstanceUID: dataset.SeriesInstanceUID, sopInstanceUID: dataset.SOPInstanceUID, findings: readFindings(dataset) };
}

/** The header attributes of a slide level file that say which level it is. */
function readLevelHeader(file) {
  const { dataset: ds } = readDataset(file);
  return { file, ...geometry(ds), studyInstanceUID: ds.StudyInstanceUID, seriesInstanceUID: ds.SeriesInstanceUID, imageType: list(ds.ImageType) };
}

module.exports = { readSlideLevel, readSegmentation, readSrFindings, readLevelHeader, geometry };
