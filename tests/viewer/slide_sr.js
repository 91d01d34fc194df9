// Reads the findings of a TID 1500 Measurement Report (DICOM PS3.16) for the slide viewer test.
// dicom-microscopy-viewer draws regions of interest but does not read SR documents (Slim does that
// itself), so this small reader stands in for that part of a slide viewer. It runs in two places
// on the same input form, a data set keyed by attribute keyword:
//   - in the browser (slide_page.js), on what dicom-microscopy-viewer's metadata.Comprehensive3DSR
//     makes of the SR's DICOMweb metadata;
//   - in node (slide_viewer_test.js), on dcmjs' naturalized data set of the SR file, for the
//     expected findings.
// Sequences are arrays in both; a single value may be a scalar or a one-item array.
// SPDX-License-Identifier: GPL-3.0-or-later
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.slideSr = factory();
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const list = (v) => (v == null ? [] : Array.isArray(v) ? v : [v]);
  const one = (v) => (Array.isArray(v) ? v[0] : v);

  /** {value, scheme, meaning} of the first item of a code sequence, or null. */
  function code(sequence) {
    const item = list(sequence)[0];
    if (!item) return null;
    return { value: String(one(item.CodeValue)), scheme: String(one(item.CodingSchemeDesignator)), meaning: String(one(item.CodeMeaning)) };
  }

  const conceptIs = (item, value, scheme) => {
    const c = code(item.ConceptNameCodeSequence);
    return Boolean(c && c.value === value && c.scheme === scheme);
  };

  /** Depth-first walk over a content item and its children. */
  function* walk(items) {
    for (const item of list(items)) {
      yield item;
      yield* walk(item.ContentSequence);
    }
  }

  /** The first referenced SOP item (ReferencedSOPSequence) of an IMAGE content item. */
  function imageReference(item) {
    const ref = list(item && item.ReferencedSOPSequence)[0];
    if (!ref) return null;
    return {
      sopClassUID: String(one(ref.ReferencedSOPClassUID)),
      sopInstanceUID: String(one(ref.ReferencedSOPInstanceUID)),
      frameNumbers: list(ref.ReferencedFrameNumber).map(Number),
      segmentNumbers: list(ref.ReferencedSegmentNumber).map(Number),
    };
  }

  /**
   * The image region of a measurement group: its Image Region (111030, DCM) SCOORD or SCOORD3D,
   * at the top of the group or under a measurement it is INFERRED FROM.
   * SCOORD: {kind: 'SCOORD', graphicType, points: [[column, row], ...] on the referenced image's
   * total pixel matrix (or frame, when a frame is referenced), image: SELECTED FROM reference}.
   * SCOORD3D: {kind: 'SCOORD3D', graphicType, points: [[x, y, z], ...] in mm, frameOfReferenceUID}.
   */
  function imageRegion(group) {
    for (const item of walk(group.ContentSequence)) {
      const type = one(item.ValueType);
      if ((type !== 'SCOORD' && type !== 'SCOORD3D') || !conceptIs(item, '111030', 'DCM')) continue;
      const data = list(item.GraphicData).map(Number);
      const dims = type === 'SCOORD' ? 2 : 3;
      const points = [];
      for (let i = 0; i + dims <= data.length; i += dims) points.push(data.slice(i, i + dims));
      const region = { kind: type, graphicType: String(one(item.GraphicType)), points };
      if (type === 'SCOORD') {
        const selected = list(item.ContentSequence).find((c) => one(c.ValueType) === 'IMAGE');
        region.image = imageReference(selected);
      } else {
        region.frameOfReferenceUID = String(one(item.ReferencedFrameOfReferenceUID));
      }
      return region;
    }
    return null;
  }

  /**
   * The findings of the report: one per Measurement Group (125007, DCM) in Imaging Measurements
   * (126010, DCM):
   * {label, finding, trackingUID, segment: {sopInstanceUID, segmentNumber} | null, region,
   *  measurements: [{name, value, unit}], comments, items}.
   * The label is what a reader shows for the finding: its first Comment (121106, DCM), else the
   * Finding (121071, DCM) code's meaning.
   */
  function readFindings(dataset) {
    const findings = [];
    const measurements = list(dataset.ContentSequence).filter((c) => conceptIs(c, '126010', 'DCM'));
    for (const container of measurements) {
      for (const group of list(container.ContentSequence)) {
        if (!conceptIs(group, '125007', 'DCM')) continue;
        const children = list(group.ContentSequence);
        const comments = children.filter((c) => one(c.ValueType) === 'TEXT' && conceptIs(c, '121106', 'DCM')).map((c) => String(one(c.TextValue)));
        const findingItem = children.find((c) => one(c.ValueType) === 'CODE' && conceptIs(c, '121071', 'DCM'));
        const finding = findingItem ? code(findingItem.ConceptCodeSequence) : null;
        const trackingItem = children.find((c) => conceptIs(c, '112040', 'DCM'));
        const segmentItem = children.find((c) => one(c.ValueType) === 'IMAGE' && conceptIs(c, '121191', 'DCM'));
        const segmentRef = imageReference(segmentItem);
        findings.push({
          label: comments[0] || (finding ? finding.meaning : ''),
          finding,
          trackingUID: trackingItem ? String(one(trackingItem.UID)) : null,
          segment: segmentRef ? { sopInstanceUID: segmentRef.sopInstanceUID, segmentNumber: segmentRef.segmentNumbers[0] } : null,
          region: imageRegion(group),
          comments,
          // The content items themselves, for a viewer that keeps them with the region (the page
          // hands them to dicom-microscopy-viewer as the ROI's evaluations and measurements).
          items: { finding: findingItem || null, measurements: children.filter((c) => one(c.ValueType) === 'NUM') },
          measurements: children
            .filter((c) => one(c.ValueType) === 'NUM')
            .map((c) => {
              const mv = list(c.MeasuredValueSequence)[0] || {};
              const unit = code(mv.MeasurementUnitsCodeSequence);
              return { name: code(c.ConceptNameCodeSequence), value: Number(one(mv.NumericValue)), unit: unit ? unit.value : '' };
            }),
        });
      }
    }
    return findings;
  }

  return { readFindings };
});
