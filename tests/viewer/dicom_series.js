// Reads the geometry of DICOM image files with DCMTK's dcmdump (Debian dcmtk, installed by
// scripts/install-deps.sh), so that the test can write a label map in the series' own
// patient coordinates and later find each slice in OHIF by its SOP Instance UID.
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');

const TAGS = {
  '0020,000d': 'studyInstanceUID',
  '0020,000e': 'seriesInstanceUID',
  '0008,0016': 'sopClassUID',
  '0008,0018': 'sopInstanceUID',
  '0008,0060': 'modality',
  '0008,103e': 'seriesDescription',
  '0020,0032': 'imagePositionPatient',
  '0020,0037': 'imageOrientationPatient',
  '0028,0030': 'pixelSpacing',
  '0028,0010': 'rows',
  '0028,0011': 'columns',
  '0020,0013': 'instanceNumber',
  '0028,0008': 'numberOfFrames',
  '0062,0001': 'segmentationType',
  '0062,0010': 'segmentationFractionalType',
  '0028,0100': 'bitsAllocated',
};
const NUMERIC_LISTS = new Set(['imagePositionPatient', 'imageOrientationPatient', 'pixelSpacing']);

/** Every regular file below dir (recursively), sorted. */
function filesBelow(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesBelow(p));
    else if (entry.isFile()) out.push(p);
  }
  return out.sort();
}

/** The top-level attributes of TAGS for each file (files dcmdump cannot read are skipped). */
function readHeaders(files) {
  const args = ['-q', '+F', '-Un', '-M'];
  for (const tag of Object.keys(TAGS)) args.push('+P', tag);
  // dcmdump reads every file it can and exits 1 when one is not DICOM (a manifest, say); the
  // files it could not read simply have no attributes here.
  const run = spawnSync('dcmdump', [...args, ...files], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.error) throw new Error(`dcmdump could not run: ${run.error.message} (install dcmtk: scripts/install-deps.sh)`);
  const text = run.stdout;
  const headers = [];
  let current = null;
  for (const line of text.split('\n')) {
    const file = /^# dcmdump \(\d+\/\d+\): (.*)$/.exec(line);
    if (file) {
      current = { file: file[1] };
      headers.push(current);
      continue;
    }
    // "(0020,0032) DS [-179.2\-179.2\0.0]   # 18, 3 ImagePositionPatient" or "(0028,0010) US 512 ..."
    const m = /^\((\w{4},\w{4})\) \w\w (?:\[([^\]]*)\]|(\S+))/.exec(line);
    if (!m || !current) continue;
    const key = TAGS[m[1].toLowerCase()];
    if (!key || key in current) continue; // first (top-level) occurrence only
    const value = m[2] !== undefined ? m[2] : m[3];
    current[key] = NUMERIC_LISTS.has(key)
      ? value.split('\\').map(Number)
      : /^(rows|columns|instanceNumber|numberOfFrames|bitsAllocated)$/.test(key)
        ? Number(value)
        : value;
  }
  return headers.filter((h) => h.sopInstanceUID);
}

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

/**
 * The single-frame image series below dir with the most slices among those of `modality`:
 * {studyInstanceUID, seriesInstanceUID, rows, columns, pixelSpacing, rowCosine, columnCosine,
 *  normal, slices: [{file, sopInstanceUID, sopClassUID, instanceNumber, imagePositionPatient}] in slice
 *  order}.
 */
function findImageSeries(dir, modality) {
  const headers = readHeaders(filesBelow(dir)).filter((h) => h.modality === modality && h.imagePositionPatient);
  if (headers.length === 0) throw new Error(`no ${modality} image with ImagePositionPatient below ${dir}`);
  const bySeries = new Map();
  for (const h of headers) {
    if (!bySeries.has(h.seriesInstanceUID)) bySeries.set(h.seriesInstanceUID, []);
    bySeries.get(h.seriesInstanceUID).push(h);
  }
  const instances = [...bySeries.values()].sort((a, b) => b.length - a.length)[0];
  const first = instances[0];
  const iop = first.imageOrientationPatient;
  const rowCosine = iop.slice(0, 3);
  const columnCosine = iop.slice(3, 6);
  const normal = cross(rowCosine, columnCosine);
  // Slice order: along the normal, as DICOM PS3.3 C.7.6.2.1.1 defines position in the stack.
  const slices = instances
    .map((h) => ({
      file: h.file,
      sopInstanceUID: h.sopInstanceUID,
      sopClassUID: h.sopClassUID,
      instanceNumber: h.instanceNumber,
      imagePositionPatient: h.imagePositionPatient,
      along: dot(h.imagePositionPatient, normal),
    }))
    .sort((a, b) => a.along - b.along);
  for (const h of instances) {
    if (h.rows !== first.rows || h.columns !== first.columns || String(h.imageOrientationPatient) !== String(iop)) {
      throw new Error(`series ${first.seriesInstanceUID}: ${h.file} differs in size or orientation`);
    }
  }
  return {
    studyInstanceUID: first.studyInstanceUID,
    seriesInstanceUID: first.seriesInstanceUID,
    seriesDescription: first.seriesDescription || '',
    rows: first.rows,
    columns: first.columns,
    pixelSpacing: first.pixelSpacing, // [between rows, between columns] (PS3.3 C.7.6.2.1.1)
    rowCosine,
    columnCosine,
    normal,
    slices,
  };
}

/**
 * The segments of a SEG file as DCMTK reads them: [{segmentNumber, label, trackingId,
 * trackingUid}] (Segment Sequence, PS3.3 C.8.20.2; tracking attributes C.8.20.4.1).
 */
function readSegments(segFile) {
  // A full dump keeps the item order (dcmdump's +P would group the values by tag); within a
  // Segment Sequence item the attributes come in tag order, Segment Number first.
  const text = execFileSync('dcmdump', ['-q', '-Un', '-M', segFile], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const segments = [];
  for (const line of text.split('\n')) {
    const m = /^\((\w{4},\w{4})\) \w\w (?:\[([^\]]*)\]|(\S+))/.exec(line.trim());
    if (!m) continue;
    const value = m[2] !== undefined ? m[2] : m[3];
    const tag = m[1].toLowerCase();
    if (tag === '0062,0004') segments.push({ segmentNumber: Number(value) });
    else if (segments.length === 0) continue;
    else if (tag === '0062,0005') segments[segments.length - 1].label = value;
    else if (tag === '0062,0020') segments[segments.length - 1].trackingId = value;
    else if (tag === '0062,0021') segments[segments.length - 1].trackingUid = value;
  }
  return segments;
}

/**
 * The SOP Instance UIDs an SR lists as evidence: Referenced SOP Instance UIDs inside its
 * Current Requested Procedure Evidence Sequence (0040,A375) (PS3.3 C.17.2.3).
 */
function evidenceInstances(srFile) {
  const lines = execFileSync('dcmdump', ['-q', '-Un', '-M', srFile], { encoding: 'utf8', maxBuffer: 256 << 20 }).split('\n');
  const start = lines.findIndex((l) => /^\s*\(0040,a375\)/i.test(l));
  if (start < 0) return [];
  const indent = lines[start].search(/\S/);
  const uids = [];
  for (let i = start + 1; i < lines.length; i++) {
    if (lines[i].search(/\S/) === indent && /\(fffe,e0dd\)/i.test(lines[i])) break;
    const m = /\(0008,1155\) UI \[([0-9.]+)\]/.exec(lines[i]);
    if (m) uids.push(m[1]);
  }
  return uids;
}

module.exports = { filesBelow, readHeaders, findImageSeries, readSegments, evidenceInstances };
