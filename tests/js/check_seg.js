// Decodes a DICOM Segmentation with dcmjs the way OHIF does and compares it with the masks the
// writer was given.
//   node check_seg.js SEG.dcm EXPECTED.json [--adapter SOURCE.dcm...]
// EXPECTED.json: {rows, columns, segments: [{number, label, tracking_uid,
//   frames: [{sop, frame, runs: [[start, length], ...]}]}]}
// 1. DicomMessage.readFile + naturalizeDataset: segments, per-frame references, and every frame's
//    pixels unpacked here bit by bit (least significant bit first, frames back to back).
// 2. With --adapter: dcmjs.adapters.Cornerstone.Segmentation.generateToolState (cornerstone 4
//    adapter, as OHIF loads SEG) with a metadata provider built from the source files; the label
//    map it returns must hold each segment's number on exactly its pixels.
// Prints "OK ..." and exits 0, or prints every difference and exits 1.
// SPDX-License-Identifier: GPL-3.0-or-later
"use strict";
const fs = require("fs");
const dcmjs = require("dcmjs");

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
const problems = [];
const fail = (text) => problems.push(text);
const asArray = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const first = (v) => asArray(v)[0];

function arrayBufferOf(path) {
  const bytes = fs.readFileSync(path);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

function readNaturalized(path) {
  const message = DicomMessage.readFile(arrayBufferOf(path));
  const dataset = DicomMetaDictionary.naturalizeDataset(message.dict);
  dataset._meta = DicomMetaDictionary.namifyDataset(message.meta);
  return dataset;
}

function runsToSet(runs) {
  const set = new Set();
  for (const [start, length] of runs) for (let i = start; i < start + length; i++) set.add(i);
  return set;
}

const args = process.argv.slice(2);
const adapterAt = args.indexOf("--adapter");
const sources = adapterAt >= 0 ? args.slice(adapterAt + 1) : [];
const [segPath, expectedPath] = args;
const expected = JSON.parse(fs.readFileSync(expectedPath, "utf8"));
const seg = readNaturalized(segPath);

// dcmjs 0.52's DicomMessage.readFile decodes items inside sequences with its default decoder, not
// the dataset's Specific Character Set (ReadBufferStream.more() does not pass it on): UTF-8 text
// in the Segment Sequence arrives as Latin-1. Undo that where the bytes form valid UTF-8.
const utf8 = (text) => {
  if (seg.SpecificCharacterSet !== "ISO_IR 192" || typeof text !== "string" || !/^[\x00-\xff]*$/.test(text)) return text;
  const repaired = Buffer.from(text, "latin1").toString("utf8");
  return repaired.includes("\ufffd") ? text : repaired;
};

if (seg.SOPClassUID !== "1.2.840.10008.5.1.4.1.1.66.4") fail(`SOPClassUID ${seg.SOPClassUID} is not Segmentation Storage`);
if (seg.Modality !== "SEG") fail(`Modality ${seg.Modality}`);
if (seg.Rows !== expected.rows || seg.Columns !== expected.columns)
  fail(`Rows/Columns ${seg.Rows}x${seg.Columns}, expected ${expected.rows}x${expected.columns}`);
const segments = asArray(seg.SegmentSequence);
if (segments.length !== expected.segments.length)
  fail(`${segments.length} segments, expected ${expected.segments.length}`);
for (const e of expected.segments) {
  const s = segments.find((x) => x.SegmentNumber === e.number);
  if (!s) {
    fail(`segment ${e.number} missing`);
    continue;
  }
  if (utf8(s.SegmentLabel) !== e.label) fail(`segment ${e.number} label '${utf8(s.SegmentLabel)}', expected '${e.label}'`);
  if (e.tracking_uid && s.TrackingUID !== e.tracking_uid)
    fail(`segment ${e.number} TrackingUID ${s.TrackingUID}, expected ${e.tracking_uid}`);
  if (!s.TrackingID) fail(`segment ${e.number} has no TrackingID`);
  if (!asArray(s.RecommendedDisplayCIELabValue).length) fail(`segment ${e.number} has no CIELab colour`);
}

// --- pixels, decoded independently of dcmjs' helpers --------------------------------------
const rows = seg.Rows;
const columns = seg.Columns;
const pixelsPerFrame = rows * columns;
const frames = asArray(seg.PerFrameFunctionalGroupsSequence);
const numberOfFrames = Number(seg.NumberOfFrames);
if (frames.length !== numberOfFrames) fail(`${frames.length} per-frame items for NumberOfFrames ${numberOfFrames}`);
const pixelBuffers = asArray(seg.PixelData).map((b) => new Uint8Array(b));
const pixelBytes = new Uint8Array(pixelBuffers.reduce((n, b) => n + b.length, 0));
let offset = 0;
for (const b of pixelBuffers) {
  pixelBytes.set(b, offset);
  offset += b.length;
}
const binary = seg.SegmentationType === "BINARY";
const expectedBytes = binary ? Math.ceil((numberOfFrames * pixelsPerFrame) / 8) : numberOfFrames * pixelsPerFrame;
if (pixelBytes.length !== expectedBytes + (expectedBytes % 2))
  fail(`PixelData has ${pixelBytes.length} bytes, ${numberOfFrames} frames need ${expectedBytes} (+ even padding)`);
// A fractional SEG holding a thresholded mask (OCCUPANCY, as the writer chooses for frames whose
// size is not a multiple of 8 bits) must hold only 0 and MaximumFractionalValue: OHIF's decoder
// (dcmjs unpackPixelData) draws nothing of a fractional SEG with any other value.
let fractionalSummary = "";
if (!binary) {
  const max = Number(seg.MaximumFractionalValue);
  if (seg.SegmentationFractionalType !== "OCCUPANCY" && seg.SegmentationFractionalType !== "PROBABILITY")
    fail(`SegmentationFractionalType '${seg.SegmentationFractionalType}'`);
  if (max !== 255) fail(`MaximumFractionalValue ${seg.MaximumFractionalValue}, expected 255`);
  if (seg.SegmentationFractionalType === "OCCUPANCY") {
    let other = 0;
    for (let i = 0; i < numberOfFrames * pixelsPerFrame; i++) if (pixelBytes[i] !== 0 && pixelBytes[i] !== max) other++;
    if (other) fail(`FRACTIONAL OCCUPANCY with ${other} values other than 0 and ${max}: OHIF would draw nothing`);
  }
  fractionalSummary = ` (FRACTIONAL ${seg.SegmentationFractionalType})`;
}
const pixelValue = (frame, i) => {
  if (binary) {
    const bit = frame * pixelsPerFrame + i;
    return (pixelBytes[bit >> 3] >> (bit & 7)) & 1;
  }
  return pixelBytes[frame * pixelsPerFrame + i];
};

const expectedByKey = new Map();
for (const s of expected.segments)
  for (const f of s.frames) expectedByKey.set(`${s.number}|${f.sop}|${f.frame || 0}`, runsToSet(f.runs));
const seen = new Set();
frames.forEach((group, k) => {
  const number = first(group.SegmentIdentificationSequence)?.ReferencedSegmentNumber;
  const derivation = first(group.DerivationImageSequence);
  const source = first(derivation?.SourceImageSequence);
  if (!source) {
    fail(`frame ${k + 1} has no DerivationImageSequence/SourceImageSequence`);
    return;
  }
  if (!first(derivation.DerivationCodeSequence) || first(derivation.DerivationCodeSequence).CodeValue !== "113076")
    fail(`frame ${k + 1}: derivation code is not (113076, DCM, Segmentation)`);
  if (first(source.PurposeOfReferenceCodeSequence)?.CodeValue !== "121322")
    fail(`frame ${k + 1}: purpose of reference is not 121322`);
  // A position in patient space, or on the slide for a SEG of a whole slide (PS3.3 C.8.12.6.1).
  const slidePosition = first(group.PlanePositionSlideSequence);
  if (seg.FrameOfReferenceUID && !first(group.PlanePositionSequence)?.ImagePositionPatient &&
      !(slidePosition && slidePosition.XOffsetInSlideCoordinateSystem !== undefined))
    fail(`frame ${k + 1} has no PlanePositionSequence (nor PlanePositionSlideSequence)`);
  if (!asArray(first(group.FrameContentSequence)?.DimensionIndexValues).length)
    fail(`frame ${k + 1} has no DimensionIndexValues`);
  const key = `${number}|${source.ReferencedSOPInstanceUID}|${source.ReferencedFrameNumber || 0}`;
  if (seen.has(key)) fail(`frame ${k + 1} repeats segment ${number} on ${key}`);
  seen.add(key);
  const want = expectedByKey.get(key) || new Set();
  let differences = 0;
  for (let i = 0; i < pixelsPerFrame; i++) {
    const v = pixelValue(k, i);
    const inside = binary ? v === 1 : v > 0;
    if (inside !== want.has(i)) {
      if (differences < 5)
        fail(`frame ${k + 1} (segment ${number}, ${key}): pixel (${i % columns}, ${Math.floor(i / columns)}) is ${v}, expected ${want.has(i) ? "inside" : "outside"}`);
      differences++;
    }
  }
  if (differences >= 5) fail(`frame ${k + 1}: ${differences} pixels differ in all`);
});
for (const key of expectedByKey.keys()) if (!seen.has(key)) fail(`no SEG frame for segment|sop|frame ${key}`);

// ReferencedSeriesSequence lists exactly the instances that frames reference.
const referencedSeries = asArray(seg.ReferencedSeriesSequence);
if (!referencedSeries.length) fail("no ReferencedSeriesSequence");
const listed = new Set(referencedSeries.flatMap((s) => asArray(s.ReferencedInstanceSequence).map((r) => r.ReferencedSOPInstanceUID)));
const used = new Set([...seen].map((k) => k.split("|")[1]));
for (const uid of used) if (!listed.has(uid)) fail(`instance ${uid} referenced by a frame but not in ReferencedSeriesSequence`);
for (const uid of listed) if (!used.has(uid)) fail(`instance ${uid} listed in ReferencedSeriesSequence but referenced by no frame`);

// --- the Cornerstone adapter, with a metadata provider from the source files ------------------
let adapterSummary = "";
if (sources.length) {
  const imageIds = [];
  const metadata = new Map();
  for (const path of sources) {
    const ds = readNaturalized(path);
    const frameCount = Number(ds.NumberOfFrames || 1);
    const shared = first(ds.SharedFunctionalGroupsSequence);
    const perFrame = asArray(ds.PerFrameFunctionalGroupsSequence);
    for (let f = 0; f < frameCount; f++) {
      const imageId = frameCount > 1 ? `dicomfile:${path}?frame=${f}` : `dicomfile:${path}`;
      const pf = perFrame[f];
      const iop =
        ds.ImageOrientationPatient ||
        first(pf?.PlaneOrientationSequence)?.ImageOrientationPatient ||
        first(shared?.PlaneOrientationSequence)?.ImageOrientationPatient;
      const ipp = ds.ImagePositionPatient || first(pf?.PlanePositionSequence)?.ImagePositionPatient;
      const spacing = ds.PixelSpacing || first(shared?.PixelMeasuresSequence)?.PixelSpacing || [1, 1];
      imageIds.push(imageId);
      metadata.set(imageId, {
        imagePlaneModule: {
          rowCosines: iop ? iop.slice(0, 3).map(Number) : [1, 0, 0],
          columnCosines: iop ? iop.slice(3, 6).map(Number) : [0, 1, 0],
          imagePositionPatient: ipp ? ipp.map(Number) : [0, 0, 0],
          rows: ds.Rows,
          columns: ds.Columns,
          rowPixelSpacing: Number(spacing[0]),
          columnPixelSpacing: Number(spacing[1]),
          frameOfReferenceUID: ds.FrameOfReferenceUID,
        },
        imagePixelModule: { rows: ds.Rows, columns: ds.Columns },
        generalSeriesModule: { seriesInstanceUID: ds.SeriesInstanceUID, modality: ds.Modality },
        sopCommonModule: { sopInstanceUID: ds.SOPInstanceUID, sopClassUID: ds.SOPClassUID },
        sourceFrame: f + 1,
      });
    }
  }
  const provider = { get: (type, imageId) => metadata.get(imageId)?.[type] };
  const quietWarn = console.warn;
  console.warn = (...m) => fail(`adapter warning: ${m.join(" ")}`);
  let state;
  try {
    state = dcmjs.adapters.Cornerstone.Segmentation.generateToolState(imageIds, arrayBufferOf(segPath), provider);
  } catch (e) {
    fail(`generateToolState threw: ${e.message}`);
  }
  console.warn = quietWarn;
  if (state) {
    if (state.labelmapBufferArray.length !== 1) fail(`adapter split the segments into ${state.labelmapBufferArray.length} label maps (overlap)`);
    const labels = new Uint16Array(state.labelmapBufferArray[0]);
    const want = new Uint16Array(labels.length);
    for (const s of expected.segments)
      for (const f of s.frames) {
        const index = imageIds.findIndex((id) => metadata.get(id).sopCommonModule.sopInstanceUID === f.sop && (f.frame ? metadata.get(id).sourceFrame === f.frame : true));
        if (index < 0) {
          fail(`adapter check: no source image for ${f.sop} frame ${f.frame}`);
          continue;
        }
        for (const i of runsToSet(f.runs)) want[index * pixelsPerFrame + i] = s.number;
      }
    let differences = 0;
    for (let i = 0; i < labels.length; i++)
      if (labels[i] !== want[i]) {
        if (differences < 5) {
          const image = Math.floor(i / pixelsPerFrame);
          const p = i % pixelsPerFrame;
          fail(`adapter: ${imageIds[image]} pixel (${p % columns}, ${Math.floor(p / columns)}) has label ${labels[i]}, expected ${want[i]}`);
        }
        differences++;
      }
    if (differences >= 5) fail(`adapter: ${differences} voxels differ in all`);
    const metaCount = state.segMetadata.data.filter((d) => d).length;
    if (metaCount !== expected.segments.length) fail(`adapter found ${metaCount} segments' metadata`);
    adapterSummary = `, adapter label map matches on ${imageIds.length} images`;
  }
}

if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}
console.log(`OK ${numberOfFrames} frames${fractionalSummary}, ${segments.length} segments${adapterSummary}`);
