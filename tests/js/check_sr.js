// Reads a TID 1500 Measurement Report with dcmjs the way OHIF 3.13.2 loads an SR
// (extensions/cornerstone-dicom-sr getSopClassHandlerModule: root concept 126000 with template
// 1500, Image Library Group, measurement groups merged by Tracking Unique Identifier, the first
// SCOORD of each merged group and its ReferencedSOPSequence), and checks it against what was
// written.
//   node check_sr.js SR.dcm EXPECTED.json
// EXPECTED.json: {study, sources: [sop...], segs: [sop...], texts: [text...],
//   findings: [{tracking_uid, label?, segment: {sop, number} | null, region: {sop, frame, graphic_type, points}}]}
// Also models OHIF's import of the SR as tracked measurements (hydrateStructuredReport, the Yes
// answer to "continue tracking?"): every finding must be imported once, as the tool that draws
// its region, with its label; a group the import would fail on is an error.
// A merged group without geometry is reported as the crash it causes in OHIF.
// Prints "OK ..." and exits 0, or prints every problem and exits 1.
// SPDX-License-Identifier: GPL-3.0-or-later
"use strict";
const fs = require("fs");
const dcmjs = require("dcmjs");

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
const problems = [];
const fail = (text) => problems.push(text);
const asArray = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const first = (v) => asArray(v)[0];
const code = (item) => first(item.ConceptNameCodeSequence)?.CodeValue;

const [srPath, expectedPath] = process.argv.slice(2);
const expected = JSON.parse(fs.readFileSync(expectedPath, "utf8"));
const bytes = fs.readFileSync(srPath);
const message = DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
const sr = DicomMetaDictionary.naturalizeDataset(message.dict);

// dcmjs 0.52's DicomMessage.readFile decodes items inside sequences with its default decoder, not
// the dataset's Specific Character Set (ReadBufferStream.more() does not pass the decoder on), so
// UTF-8 text in the content tree arrives as Latin-1. OHIF reads SR metadata as DICOMweb JSON and
// is not affected. Undo it where the bytes form valid UTF-8.
const utf8 = (text) => {
  if (sr.SpecificCharacterSet !== "ISO_IR 192" || typeof text !== "string" || !/^[\x00-\xff]*$/.test(text)) return text;
  const repaired = Buffer.from(text, "latin1").toString("utf8");
  return repaired.includes("\ufffd") ? text : repaired;
};

if (sr.SOPClassUID !== "1.2.840.10008.5.1.4.1.1.88.34") fail(`SOPClassUID ${sr.SOPClassUID} is not Comprehensive 3D SR`);
if (sr.Modality !== "SR") fail(`Modality ${sr.Modality}`);
if (sr.StudyInstanceUID !== expected.study) fail(`StudyInstanceUID ${sr.StudyInstanceUID}, expected ${expected.study}`);
if (sr.VerificationFlag !== "UNVERIFIED") fail(`VerificationFlag ${sr.VerificationFlag}`);
if (sr.CompletionFlag !== "COMPLETE") fail(`CompletionFlag ${sr.CompletionFlag}`);
// OHIF's SOP class handler: only TID 1500 Imaging Measurement Reports are loaded.
if (first(sr.ConceptNameCodeSequence)?.CodeValue !== "126000") fail("root concept is not (126000, DCM, Imaging Measurement Report)");
if (first(sr.ContentTemplateSequence)?.TemplateIdentifier !== "1500") fail("no ContentTemplateSequence with TemplateIdentifier 1500");
const content = asArray(sr.ContentSequence);

// _getReferencedImagesList: Image Library -> Image Library Group -> ReferencedSOPSequence.
const library = content.find((i) => code(i) === "111028");
const group = library && asArray(library.ContentSequence).find((i) => code(i) === "126200");
if (!group) fail("no Image Library (111028) with an Image Library Group (126200): OHIF fails reading it");
const libraryImages = new Set();
for (const l of asArray(library?.ContentSequence))
  for (const item of asArray(l.ContentSequence))
    for (const ref of asArray(item.ReferencedSOPSequence)) libraryImages.add(ref.ReferencedSOPInstanceUID);
for (const sop of expected.sources) if (!libraryImages.has(sop)) fail(`source ${sop} missing from the Image Library`);

// _getMeasurements: Measurement Groups of Imaging Measurements, merged by tracking UID.
const measurements = content.find((i) => code(i) === "126010");
const groups = asArray(measurements?.ContentSequence).filter((i) => code(i) === "125007");
if (expected.findings.length && !measurements) fail("no Imaging Measurements (126010) container");
const merged = new Map();
for (const g of groups) {
  const items = asArray(g.ContentSequence);
  const tracking = items.find((i) => code(i) === "112040");
  if (!tracking) {
    fail("a measurement group without Tracking Unique Identifier (OHIF reads .UID of undefined)");
    continue;
  }
  if (!merged.has(tracking.UID)) merged.set(tracking.UID, [...items]);
  else merged.get(tracking.UID).push(...items.filter((i) => code(i) !== "112040"));
}
// OHIF's text box lines: `${SHORT_HAND_MAP[label] ?? label}: ${value}` (DICOMSRDisplayTool).
const SHORT_HAND = { "Short Axis": "W: ", "Long Axis": "L: ", AREA: "Area: ", Length: "", CORNERSTONEFREETEXT: "" };
const line = (label, value) => `${SHORT_HAND[label] ?? label}: ${value}`;
const numLabel = (i) => ({
  label: first(i.ConceptNameCodeSequence).CodeMeaning,
  value: `${Number(first(i.MeasuredValueSequence).NumericValue).toFixed(2)} ${first(first(i.MeasuredValueSequence).MeasurementUnitsCodeSequence).CodeValue}`,
});
const scoordOf = (items) => items.find((i) => i.ValueType === "SCOORD" || i.ValueType === "SCOORD3D");

// 1. Opening the SR (the user answers No to tracking): _processMeasurement. With a SCOORD at the
// top of the merged groups, _processTID1410Measurement (NUM labels and the SNOMED finding site,
// printed as "363698007: <site>"); otherwise _processNonGeometricallyDefinedMeasurement (Comment
// texts, NUM labels, and the drawing from each NUM's INFERRED FROM SCOORD).
const drawn = new Map();
for (const [uid, items] of merged) {
  const topLevel = scoordOf(items);
  const nums = items.filter((i) => i.ValueType === "NUM" && i.MeasuredValueSequence);
  let graphic = topLevel;
  let labels;
  if (topLevel) {
    labels = nums.map(numLabel);
    const site = items.find((i) => code(i) === "363698007" && first(i.ConceptNameCodeSequence).CodingSchemeDesignator === "SCT");
    if (site) labels.push({ label: "363698007", value: first(site.ConceptCodeSequence).CodeMeaning });
  } else {
    labels = items.filter((i) => code(i) === "121106" && i.TextValue).map((i) => ({ label: i.TextValue, value: "" }));
    labels.push(...nums.map(numLabel));
    for (const n of nums) {
      const inner = scoordOf(asArray(n.ContentSequence));
      if (inner && !graphic) graphic = inner;
    }
  }
  if (!graphic) {
    fail(`tracking UID ${uid}: no SCOORD in its groups or their measurements: OHIF 3.13.2 crashes on coords[0]`);
    continue;
  }
  if (!["CONTAINS", "INFERRED FROM"].includes(graphic.RelationshipType)) fail(`tracking UID ${uid}: SCOORD relationship ${graphic.RelationshipType}`);
  const referenced = first(first(graphic.ContentSequence)?.ReferencedSOPSequence);
  if (!referenced) fail(`tracking UID ${uid}: SCOORD has no SELECTED FROM image (coords[0].ReferencedSOPSequence is undefined)`);
  const firstUid = items.find((i) => i.ValueType === "UIDREF");
  if (firstUid?.UID !== uid) fail(`tracking UID ${uid}: OHIF takes the first UIDREF (${firstUid?.UID}) as the tracking UID`);
  const trackingId = items.find((i) => code(i) === "112039");
  if (!trackingId?.TextValue) fail(`tracking UID ${uid}: no Tracking Identifier text`);
  const lines = labels.slice(0, 5).map((l) => line(l.label, l.value));
  for (const l of lines)
    if (/^L: :|^W: :|^[0-9]+: /.test(l)) fail(`tracking UID ${uid}: OHIF would show the unreadable label "${l}"`);
  const segment = items.find((i) => i.ValueType === "IMAGE" && code(i) === "121191");
  drawn.set(uid, { graphic, referenced, labels: nums.map(numLabel).map((l) => line(l.label, l.value)), lines, segment: segment && first(segment.ReferencedSOPSequence) });
}

// 2. Continuing to track (the user answers Yes): hydrateStructuredReport ->
// MeasurementReport.generateToolState (@cornerstonejs/adapters), group by group. The tool is the
// one whose "Cornerstone3DTools@^0.1.0:<tool>" prefix starts the tracking identifier; failing
// that, RectangleROI (a top-level POLYLINE of 4 or 5 points) or Probe (a POINT), tested on the
// group's top-level SCOORD, and a group without one throws ("Unable to generate tool state").
// The tool reads its drawing from the first NUM's content, or from the top-level SCOORDs when
// the group has no NUM ("No spatial coordinates group found" otherwise); its label is the first
// Comment.
const TOOLS = ["ArrowAnnotate", "Bidirectional", "Angle", "CobbAngle", "CircleROI", "EllipticalROI", "RectangleROI", "Length", "PlanarFreehandROI", "Probe"];
const hydrated = new Map();
for (const g of groups) {
  const items = asArray(g.ContentSequence);
  const uid = items.find((i) => code(i) === "112040")?.UID;
  const trackingId = items.find((i) => first(i.ConceptNameCodeSequence)?.CodeMeaning === "Tracking Identifier")?.TextValue || "";
  let tool = TOOLS.find((t) => trackingId === `Cornerstone3DTools@^0.1.0:${t}` || (trackingId.includes(":") && trackingId.startsWith(`Cornerstone3DTools@^0.1.0:${t}`)));
  if (!tool) {
    const top = scoordOf(items);
    if (!top) {
      fail(`tracking UID ${uid}: a measurement group without a tool and without a top-level SCOORD: OHIF's import fails ("Unable to generate tool state")`);
      continue;
    }
    const points = asArray(top.GraphicData).length / (top.ValueType === "SCOORD3D" ? 3 : 2);
    if (top.GraphicType === "POLYLINE" && (points === 4 || points === 5)) tool = "RectangleROI";
    else if (top.GraphicType === "POINT" && points <= 2) tool = "Probe";
    else continue; // not imported, silently
  }
  const firstNum = items.find((i) => i.ValueType === "NUM");
  const geometry = firstNum ? scoordOf(asArray(firstNum.ContentSequence)) : scoordOf(items);
  if (!geometry) {
    fail(`tracking UID ${uid}: imported as ${tool} but ${firstNum ? "its first NUM has no INFERRED FROM SCOORD" : "it has no SCOORD"}: "No spatial coordinates group found"`);
    continue;
  }
  const label = items.find((i) => code(i) === "121106")?.TextValue;
  if (hydrated.has(uid)) fail(`tracking UID ${uid}: imported twice`);
  hydrated.set(uid, { tool, geometry, label, firstNum });
}

for (const f of expected.findings) {
  const d = drawn.get(f.tracking_uid);
  if (!d) {
    fail(`finding ${f.tracking_uid} is not drawn`);
    continue;
  }
  if (d.graphic.GraphicType !== f.region.graphic_type) fail(`finding ${f.tracking_uid}: GraphicType ${d.graphic.GraphicType}, expected ${f.region.graphic_type}`);
  const data = asArray(d.graphic.GraphicData);
  if (data.length !== 2 * f.region.points) fail(`finding ${f.tracking_uid}: ${data.length / 2} points, expected ${f.region.points}`);
  if (f.region.graphic_type === "POLYLINE" && (data[0] !== data[data.length - 2] || data[1] !== data[data.length - 1]))
    fail(`finding ${f.tracking_uid}: the outline is not closed`);
  if (d.referenced?.ReferencedSOPInstanceUID !== f.region.sop) fail(`finding ${f.tracking_uid}: drawn on ${d.referenced?.ReferencedSOPInstanceUID}, expected ${f.region.sop}`);
  const frame = Number(first(d.referenced?.ReferencedFrameNumber) || 0);
  if (frame !== (f.region.frame || 0)) fail(`finding ${f.tracking_uid}: frame ${frame}, expected ${f.region.frame}`);
  if (f.segment) {
    if (d.segment?.ReferencedSOPInstanceUID !== f.segment.sop) fail(`finding ${f.tracking_uid}: referenced segment in ${d.segment?.ReferencedSOPInstanceUID}, expected SEG ${f.segment.sop}`);
    if (Number(first(d.segment?.ReferencedSegmentNumber)) !== f.segment.number) fail(`finding ${f.tracking_uid}: segment number ${first(d.segment?.ReferencedSegmentNumber)}, expected ${f.segment.number}`);
  }
  if (!d.labels.length) fail(`finding ${f.tracking_uid}: no measurement label for the viewer`);
  const h = hydrated.get(f.tracking_uid);
  if (!h) {
    fail(`finding ${f.tracking_uid}: not imported as a tracked measurement when the user continues tracking`);
    continue;
  }
  const tool = f.region.graphic_type === "POINT" ? "Probe" : "PlanarFreehandROI";
  if (h.tool !== tool) fail(`finding ${f.tracking_uid}: imported as ${h.tool}, expected ${tool}`);
  if (h.geometry.GraphicType !== f.region.graphic_type || asArray(h.geometry.GraphicData).length !== 2 * f.region.points)
    fail(`finding ${f.tracking_uid}: the imported drawing is a ${h.geometry.GraphicType} of ${asArray(h.geometry.GraphicData).length / 2} points`);
  const hydratedSop = first(first(h.geometry.ContentSequence)?.ReferencedSOPSequence)?.ReferencedSOPInstanceUID;
  if (hydratedSop !== f.region.sop) fail(`finding ${f.tracking_uid}: the imported drawing is on ${hydratedSop}, expected ${f.region.sop}`);
  if (!h.label) fail(`finding ${f.tracking_uid}: no Comment, so the tracked measurement has no label`);
  if (f.label && h.label !== f.label) fail(`finding ${f.tracking_uid}: tracked label "${h.label}", expected "${f.label}"`);
}
if (drawn.size !== expected.findings.length) fail(`${drawn.size} findings drawn, expected ${expected.findings.length}`);
if (hydrated.size !== expected.findings.length) fail(`${hydrated.size} findings imported as tracked measurements, expected ${expected.findings.length}`);

// Report-level text.
const evaluations = content.find((i) => code(i) === "C0034375");
const texts = asArray(evaluations?.ContentSequence).filter((i) => i.ValueType === "TEXT").map((i) => utf8(i.TextValue));
if (JSON.stringify(texts) !== JSON.stringify(expected.texts)) fail(`report texts ${JSON.stringify(texts)}, expected ${JSON.stringify(expected.texts)}`);

// Evidence: the SEGs and all referenced images.
const evidence = new Set();
for (const study of asArray(sr.CurrentRequestedProcedureEvidenceSequence))
  for (const series of asArray(study.ReferencedSeriesSequence))
    for (const ref of asArray(series.ReferencedSOPSequence)) evidence.add(ref.ReferencedSOPInstanceUID);
for (const sop of [...expected.sources, ...expected.segs]) if (!evidence.has(sop)) fail(`${sop} missing from CurrentRequestedProcedureEvidenceSequence`);

if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}
const example = [...drawn.values()][0];
console.log(`OK ${groups.length} measurement groups, ${drawn.size} findings drawn${example ? ` (e.g. ${example.lines.join(" | ")})` : ""}, ${hydrated.size} imported when tracking, ${texts.length} report texts`);
