// The viewer checks proper: given a study stored in a running Orthanc (a CT series, the SEG and
// SR written for a known label map), open it in OHIF in headless Chromium and check what a
// radiologist would see. Data preparation lives in viewer_test.js.
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const path = require('path');
const ohif = require('./ohif_page.js');

const CHROMIUM = '/usr/bin/chromium';
// Flags of docs/DICOM-OUTPUT.md, "OHIF in a test": no GPU (WebGL falls back to
// SwiftShader), nothing that reaches the network by itself.
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Records named checks; prints each as it is decided. */
class Checks {
  constructor(log) {
    this.log = log;
    this.passed = [];
    this.failed = [];
  }
  check(name, ok, detail = '') {
    (ok ? this.passed : this.failed).push(name);
    this.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ` -- ${detail}` : ''}`);
    return ok;
  }
}

const base64 = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64');

/** Pixel count of `label` in slice k of the label map. */
const countLabel = (labelMap, k, label) => {
  const s = labelMap.slices[k];
  let n = 0;
  if (s) for (let i = 0; i < s.length; i++) if (s[i] === label) n++;
  return n;
};

/**
 * Pixels enclosed by the outline the SR draws for `label` on slice k: its largest 4-connected
 * region with any holes (sr-writer/finding_geometry.h key_region), which is the area the SR
 * states there and the area OHIF computes from the outline.
 */
const outlinedPixels = (labelMap, k, label) => {
  const s = labelMap.slices[k];
  if (!s) return 0;
  const { rows, columns } = labelMap;
  const region = new Int32Array(rows * columns).fill(-1);
  let best = -1, bestSize = 0, next = 0;
  for (let p = 0; p < s.length; p++) {
    if (s[p] !== label || region[p] >= 0) continue;
    const id = next++;
    let size = 0;
    const stack = [p];
    region[p] = id;
    while (stack.length) {
      const q = stack.pop();
      size++;
      const r = Math.floor(q / columns), c = q % columns;
      for (const [dr, dc] of [[0, 1], [0, -1], [1, 0], [-1, 0]]) {
        const rr = r + dr, cc = c + dc;
        if (rr < 0 || cc < 0 || rr >= rows || cc >= columns) continue;
        const n = rr * columns + cc;
        if (s[n] === label && region[n] < 0) {
          region[n] = id;
          stack.push(n);
        }
      }
    }
    if (size > bestSize) {
      best = id;
      bestSize = size;
    }
  }
  // Holes: pixels outside the region that the image border cannot reach (8-connected).
  const outside = new Uint8Array(rows * columns);
  const stack = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) {
    const p = r * columns + c;
    if ((r === 0 || c === 0 || r === rows - 1 || c === columns - 1) && region[p] !== best) {
      outside[p] = 1;
      stack.push(p);
    }
  }
  while (stack.length) {
    const q = stack.pop();
    const r = Math.floor(q / columns), c = q % columns;
    for (let dr = -1; dr <= 1; dr++) for (let dc = -1; dc <= 1; dc++) {
      const rr = r + dr, cc = c + dc;
      if (rr < 0 || cc < 0 || rr >= rows || cc >= columns) continue;
      const n = rr * columns + cc;
      if (!outside[n] && region[n] !== best) {
        outside[n] = 1;
        stack.push(n);
      }
    }
  }
  return outside.reduce((n, v) => n + (v ? 0 : 1), 0);
};

/** Canvas bounding box of the source-pixel boxes that carry `label` on slice k. */
async function maskCanvasBox(page, series, labelMap, k, label) {
  const s = labelMap.slices[k];
  let minR = Infinity, maxR = -Infinity, minC = Infinity, maxC = -Infinity;
  for (let r = 0; r < labelMap.rows; r++) {
    for (let c = 0; c < labelMap.columns; c++) {
      if (s && s[r * labelMap.columns + c] === label) {
        minR = Math.min(minR, r); maxR = Math.max(maxR, r);
        minC = Math.min(minC, c); maxC = Math.max(maxC, c);
      }
    }
  }
  if (minR === Infinity) return null;
  // Outer corners of the corner pixels (pixel centres +- 0.5).
  const corners = await ohif.sourcePixelToCanvas(page, geometryOf(series), series.slices[k].imagePositionPatient, [
    [minC - 0.5, minR - 0.5],
    [maxC + 0.5, maxR + 0.5],
  ]);
  const pxPerSource = (corners[1][0] - corners[0][0]) / (maxC - minC + 1);
  return {
    minX: Math.min(corners[0][0], corners[1][0]),
    maxX: Math.max(corners[0][0], corners[1][0]),
    minY: Math.min(corners[0][1], corners[1][1]),
    maxY: Math.max(corners[0][1], corners[1][1]),
    pxPerSource,
  };
}

/**
 * The page region of the viewport grid, widened to the right edge of the page when
 * `withRightPanel` (the segmentation panel).
 */
async function viewportRegion(page, withRightPanel) {
  const box = await page.locator('[data-cy="viewport-grid"]').first().boundingBox();
  if (!box) return undefined;
  const width = withRightPanel ? page.viewportSize().width - box.x : box.width;
  return { x: box.x, y: box.y, width, height: box.height };
}

/** Distance between neighbouring slice centres (the series is evenly spaced; checked). */
function sliceDistance(series) {
  const p = series.slices.map((s) => s.imagePositionPatient);
  const step = (i) => Math.hypot(...p[i + 1].map((v, j) => v - p[i][j]));
  const d = step(0);
  for (let i = 1; i + 1 < p.length; i++) {
    if (Math.abs(step(i) - d) > 1e-3) throw new Error(`slices ${i + 1} and ${i + 2} are ${step(i)} mm apart, not ${d}`);
  }
  return d;
}

function geometryOf(series) {
  return {
    rows: series.rows,
    columns: series.columns,
    rowSpacing: series.pixelSpacing[0],
    columnSpacing: series.pixelSpacing[1],
    rowCosine: series.rowCosine,
    columnCosine: series.columnCosine,
  };
}

/**
 * Opens the study and checks one SEG + SR pair.
 * @param {object} o
 *   o.page, o.baseUrl, o.series (dicom_series.findImageSeries), o.labelMap (label_map.js),
 *   o.findings: [{label, name, site}] as given to the writer, o.segDescription, o.srDescription,
 *   o.segSegments: [{segmentNumber, label, trackingUid}] read from the SEG file,
 *   o.artifacts (folder for screenshots), o.tag (file name prefix), o.checks (Checks),
 *   o.timeoutMs, o.problems (watchPage result); o.everySlice: compare every slice; o.exact: no
 *   mismatch at mask edges either; o.srAnswer: 'No' (default, the SR as written) or 'Yes' (its
 *   findings imported as tracked measurements, checkTrackedFindings); o.allowedWarning: a RegExp
 *   of warnings that are no problem for this pair (e.g. OHIF's frame-by-frame retrieval of a
 *   padded fractional SEG, which it then draws right)
 */
async function checkSegAndSr(o) {
  const { page, checks, series, labelMap, findings, timeoutMs, problems } = o;
  const shot = (name) => path.join(o.artifacts, `${o.tag}-${name}.png`);
  const warnings = () => problems.warnings.filter((w) => !(o.allowedWarning && o.allowedWarning.test(w)));
  const problemCount = () =>
    problems.consoleErrors.length +
    problems.errorBoundaries.length +
    problems.pageErrors.length +
    problems.httpErrors.length +
    problems.failedRequests.length +
    warnings().length;
  const problemText = () =>
    [
      ...problems.consoleErrors.map((e) => `console error: ${e}`),
      ...problems.errorBoundaries.map((e) => `error boundary: ${e}`),
      ...problems.pageErrors.map((e) => `uncaught: ${e}`),
      ...problems.httpErrors.map((e) => `HTTP ${e}`),
      ...problems.failedRequests.map((e) => `request failed: ${e}`),
      ...warnings().map((e) => `warning: ${e}`),
    ]
      .join('\n    ')
      .slice(0, 4000);

  // --- SEG -------------------------------------------------------------------
  const t0 = Date.now();
  let segmentation;
  try {
    segmentation = await ohif.loadSegmentation(page, o.segDescription, timeoutMs, problems);
  } catch (err) {
    await page.screenshot({ path: shot('seg-load-failed') });
    checks.check(`${o.tag}: OHIF loads the SEG "${o.segDescription}"`, false, `${err.message.split('\n')[0]}\n    ${problemText()}`);
    return;
  }
  checks.check(`${o.tag}: OHIF loads the SEG "${o.segDescription}"`, true, `${segmentation.segments.length} segments, ${Date.now() - t0} ms`);

  const segmentIndexOfLabel = {};
  for (const f of findings) {
    const segment = segmentation.segments.find((s) => s.label === f.name);
    checks.check(
      `${o.tag}: segment "${f.name}" (label ${f.label}) is in OHIF's segmentation`,
      Boolean(segment),
      segment ? `segment ${segment.segmentIndex}` : `OHIF has ${JSON.stringify(segmentation.segments)}`,
    );
    if (segment) segmentIndexOfLabel[f.label] = segment.segmentIndex;
  }

  const panel = await ohif.segmentationPanelLabels(page, findings.map((f) => f.name), timeoutMs);
  checks.check(
    `${o.tag}: the segmentation panel lists ${findings.map((f) => `"${f.name}"`).join(', ')}`,
    panel.allListed,
    `panel rows: ${JSON.stringify(panel.rows)}`,
  );

  // Slices to compare: every slice with a finding, plus one on either side of the findings; with
  // o.everySlice, every slice of the series.
  const withFinding = labelMap.slices.map((s, k) => (s ? k : -1)).filter((k) => k >= 0);
  const toCheck = new Set(withFinding);
  toCheck.add(Math.max(0, withFinding[0] - 1));
  toCheck.add(Math.min(labelMap.slices.length - 1, withFinding[withFinding.length - 1] + 1));
  if (o.everySlice) labelMap.slices.forEach((_, k) => toCheck.add(k));
  const slices = [...toCheck]
    .sort((a, b) => a - b)
    .map((k) => ({
      sliceIndex: k,
      sopInstanceUID: series.slices[k].sopInstanceUID,
      imagePositionPatient: series.slices[k].imagePositionPatient,
      labels: labelMap.slices[k] ? base64(labelMap.slices[k]) : null,
    }));
  const t1 = Date.now();
  let overlay;
  try {
    overlay = await ohif.compareOverlay(page, {
      segmentationId: segmentation.segmentationId,
      geometry: geometryOf(series),
      slices,
      segmentIndexOfLabel,
      timeoutMs,
    });
  } catch (err) {
    checks.check(`${o.tag}: overlay comparison ran`, false, err.message);
    return;
  }
  const nameOf = (label) => (findings.find((f) => f.label === label) || {}).name;
  for (const r of overlay.results) {
    const expected = r.labels && r.labels.length ? r.labels.map((l) => `"${nameOf(l.label)}"`).join(' and ') : 'nothing';
    const name = `${o.tag}: slice ${r.sliceIndex + 1}/${series.slices.length} overlay matches the label map (${expected})`;
    if (r.error) {
      checks.check(name, false, r.error);
      continue;
    }
    const perLabel = r.labels.map(
      (l) =>
        `"${nameOf(l.label)}" (segment ${l.segmentIndex}): mask ${l.maskPixels} px, drawn in its colour ${l.drawnPixels} px, ` +
        `other colour inside ${l.wrongSegment}, shifted-mask control ${l.shiftedCheckMismatches}${l.error ? `, ${l.error}` : ''}`,
    );
    const detail =
      `labelled ${r.maskPixels} px, drawn ${r.drawnPixels} px, mismatches: ${r.edgeMismatches} at edges, ` +
      `${r.missedInside} missed inside, ${r.drawnOutside} drawn outside, ${r.offCanvas} off canvas` +
      (perLabel.length ? `; ${perLabel.join('; ')}` : '');
    // o.exact: voxel by voxel, edges included (each source pixel covers many canvas pixels).
    const ok =
      r.missedInside === 0 &&
      r.drawnOutside === 0 &&
      r.offCanvas === 0 &&
      (!o.exact || r.edgeMismatches === 0) &&
      r.labels.every((l) => !l.error && l.wrongSegment === 0 && l.drawnPixels > 0 && l.shiftedCheckMismatches > 0);
    checks.check(name, ok, detail);
  }
  o.log(`  overlay comparison: ${overlay.results.length} slices in ${Date.now() - t1} ms (canvas ${overlay.canvas.join('x')}) ${JSON.stringify(overlay.timing)}`);

  // Screenshot of the overlay on the slice where both findings are largest together.
  const both = withFinding.filter((k) => findings.every((f) => countLabel(labelMap, k, f.label) > 0));
  const showcase = (both.length ? both : withFinding)
    .map((k) => [k, findings.reduce((n, f) => n + countLabel(labelMap, k, f.label), 0)])
    .sort((a, b) => b[1] - a[1])[0][0];
  let t = Date.now();
  await ohif.showSlice(page, series.slices[showcase].sopInstanceUID, timeoutMs);
  o.log(`  showcase slice ${showcase + 1} shown in ${Date.now() - t} ms`);
  t = Date.now();
  // The viewport with the segmentation panel beside it (also the README's picture).
  await page.screenshot({ path: shot('seg-overlay'), clip: await viewportRegion(page, true) });
  o.log(`  screenshot in ${Date.now() - t} ms`);

  checks.check(`${o.tag}: no error boundary after loading the SEG`, !(await ohif.errorBoundaryText(page, problems)), await ohif.errorBoundaryText(page, problems));
  checks.check(`${o.tag}: no console error, uncaught exception or HTTP error after the SEG`, problemCount() === 0, problemText());

  // --- SR --------------------------------------------------------------------
  if (o.srAnswer === 'Yes') {
    await checkTrackedFindings(o, shot, problemCount, problemText);
    return;
  }
  const t2 = Date.now();
  let report;
  try {
    report = await ohif.loadStructuredReport(page, o.srDescription, timeoutMs, problems);
  } catch (err) {
    await page.screenshot({ path: shot('sr-load-failed') });
    checks.check(
      `${o.tag}: OHIF opens the SR "${o.srDescription}" and draws its findings`,
      false,
      `${err.message.split('\n')[0]}\n    error boundary: ${await ohif.errorBoundaryText(page, problems)}\n    ${problemText()}`,
    );
    return;
  }
  checks.check(`${o.tag}: OHIF opens the SR "${o.srDescription}" and draws its findings`, true, `${report.measurements.length} measurements, ${Date.now() - t2} ms`);
  checks.check(
    `${o.tag}: the SR has one measurement per finding`,
    report.measurements.length === findings.length,
    JSON.stringify(report.measurements.map((m) => m.trackingIdentifier)),
  );

  for (const f of findings) {
    const segment = (o.segSegments || []).find((s) => s.label === f.name);
    const measurement = report.measurements.find((m) => segment && m.trackingUniqueIdentifier === segment.trackingUid);
    if (
      !checks.check(
        `${o.tag}: SR finding "${f.name}" shares its tracking UID with SEG segment "${f.name}"`,
        Boolean(measurement),
        `SEG TrackingUID ${segment ? segment.trackingUid : '(no such segment in the SEG file)'}; SR tracking UIDs ${report.measurements
          .map((m) => m.trackingUniqueIdentifier)
          .join(', ')}`,
      )
    ) {
      continue;
    }
    const uid = measurement.trackingUniqueIdentifier;
    let shownError = '';
    try {
      await ohif.showFinding(page, measurement, timeoutMs);
    } catch (err) {
      shownError = err.message.split('\n')[0];
    }
    const drawn = await ohif.drawnFinding(page, uid);
    const k = series.slices.findIndex((s) => s.sopInstanceUID === drawn.sopInstanceUID);
    checks.check(
      `${o.tag}: SR finding "${f.name}" is drawn on a slice that has it`,
      !shownError && drawn.shown && k >= 0 && countLabel(labelMap, k, f.label) > 0,
      `${shownError ? `${shownError}; ` : ''}shown ${drawn.shown}, slice ${k + 1}, ${k >= 0 ? countLabel(labelMap, k, f.label) : 0} px of the finding there`,
    );
    if (!(drawn.shown && k >= 0)) continue;

    // Geometry: the drawn shape's extent matches the finding's extent on that slice (within
    // one source pixel), whether the SR outlines it or boxes it.
    const maskBox = await maskCanvasBox(page, series, labelMap, k, f.label);
    const tol = maskBox ? Math.abs(maskBox.pxPerSource) * 1.01 + 0.5 : 0;
    const box = drawn.canvasBox;
    const boxOk =
      maskBox &&
      box &&
      Math.abs(box.minX - maskBox.minX) <= tol &&
      Math.abs(box.maxX - maskBox.maxX) <= tol &&
      Math.abs(box.minY - maskBox.minY) <= tol &&
      Math.abs(box.maxY - maskBox.maxY) <= tol;
    const fmt = (b) => (b ? `x ${b.minX.toFixed(1)}..${b.maxX.toFixed(1)}, y ${b.minY.toFixed(1)}..${b.maxY.toFixed(1)}` : 'none');
    checks.check(
      `${o.tag}: SR finding "${f.name}" geometry covers the finding's pixels on slice ${k + 1}`,
      boxOk && drawn.svgShapes.length > 0,
      `drawn ${fmt(box)} (${drawn.svgShapes.join(',')}); label map ${fmt(maskBox)}; tolerance ${tol.toFixed(2)} canvas px`,
    );

    // Text: the finding's label, and its measurements with values that agree with the label map.
    const text = drawn.textLines.join(' | ');
    checks.check(
      `${o.tag}: SR finding "${f.name}" text box shows its label "${f.displayLabel}"`,
      drawn.textLines.some((l) => l.includes(f.displayLabel)),
      text,
    );
    // OHIF's own abbreviations turn some labels into noise ("Long Axis" -> "L: : 40.00 mm") and
    // print a SNOMED finding site by its code ("363698007: Liver"): neither may appear.
    const unreadable = drawn.textLines.filter((l) => /^[LW]: :|^[0-9]+: /.test(l));
    checks.check(`${o.tag}: SR finding "${f.name}" text box reads without code values or broken abbreviations`, unreadable.length === 0 && drawn.textLines.length > 0, text);
    const areaLine = drawn.textLines.find((l) => /^Area: /.test(l));
    const [rowSpacing, columnSpacing] = series.pixelSpacing;
    const expectedArea = outlinedPixels(labelMap, k, f.label) * rowSpacing * columnSpacing;
    const shownArea = areaLine ? Number((/^Area: ([0-9.]+) mm2$/.exec(areaLine) || [])[1]) : NaN;
    checks.check(
      `${o.tag}: SR finding "${f.name}" text box shows its area on that slice`,
      Math.abs(shownArea - expectedArea) <= 0.005 + 0.01 * expectedArea,
      `shown "${areaLine || '(no Area line)'}", label map ${expectedArea.toFixed(2)} mm2 for its outlined region (tolerance 1%)`,
    );
    const volumeLine = drawn.textLines.find((l) => /^Volume: /.test(l));
    const shownVolume = volumeLine ? Number((/^Volume: ([0-9.]+) mm3$/.exec(volumeLine) || [])[1]) : NaN;
    const sliceSpacing = sliceDistance(series);
    const expectedVolume =
      labelMap.slices.reduce((n, _, z) => n + countLabel(labelMap, z, f.label), 0) * rowSpacing * columnSpacing * sliceSpacing;
    checks.check(
      `${o.tag}: SR finding "${f.name}" text box shows its volume`,
      Math.abs(shownVolume - expectedVolume) <= 0.005 + 0.01 * expectedVolume,
      `shown "${volumeLine || '(no Volume line)'}", label map ${expectedVolume.toFixed(2)} mm3 (voxels x ${rowSpacing} x ${columnSpacing} x ${sliceSpacing.toFixed(3)} mm, tolerance 1%)`,
    );
    await page.screenshot({ path: shot(`sr-${f.label}`), clip: await viewportRegion(page, false) });
  }

  checks.check(`${o.tag}: no error boundary after opening the SR`, !(await ohif.errorBoundaryText(page, problems)), await ohif.errorBoundaryText(page, problems));
  checks.check(`${o.tag}: no console error, uncaught exception or HTTP error after the SR`, problemCount() === 0, problemText());
}

/**
 * The SR opened and imported as tracked measurements (the user answers Yes to "Do you want to
 * continue tracking measurements for this study?"): every finding is listed in the Measurements
 * panel under its readable label, with its finding site, on a slice that has it, and with its
 * area there; OHIF's import gives up on no measurement group.
 */
async function checkTrackedFindings(o, shot, problemCount, problemText) {
  const { page, checks, series, labelMap, findings, timeoutMs, problems } = o;
  const t = Date.now();
  let report;
  try {
    report = await ohif.loadStructuredReport(page, o.srDescription, timeoutMs, problems, 'Yes');
  } catch (err) {
    await page.screenshot({ path: shot('sr-load-failed') });
    checks.check(`${o.tag}: OHIF opens the SR "${o.srDescription}"`, false, `${err.message.split('\n')[0]}\n    ${problemText()}`);
    return;
  }
  checks.check(
    `${o.tag}: OHIF offers to track the SR's findings ("continue tracking measurements?")`,
    report.rehydratable,
    `${report.measurements.length} findings, ${Date.now() - t} ms`,
  );
  if (!report.rehydratable) return;
  let rows;
  try {
    rows = await ohif.trackedMeasurementRows(page, findings.length, timeoutMs);
  } catch (err) {
    rows = [];
  }
  await page.screenshot({ path: shot('tracked') });
  checks.check(
    `${o.tag}: after Yes the Measurements panel lists ${findings.length} tracked measurements`,
    rows.length === findings.length,
    JSON.stringify(rows.map((r) => r.lines)),
  );
  const [rowSpacing, columnSpacing] = series.pixelSpacing;
  for (const f of findings) {
    const label = `${f.name} (${f.site.meaning})`;
    const row = rows.find((r) => r.lines.includes(label));
    if (!checks.check(`${o.tag}: tracked finding "${label}" is in the Measurements panel`, Boolean(row), JSON.stringify(rows.map((r) => r.lines)))) continue;
    checks.check(
      `${o.tag}: tracked finding "${label}" shows its finding site and finding`,
      row.lines.includes(f.site.meaning) && row.lines.includes(f.type.meaning),
      row.lines.join(' | '),
    );
    let shown;
    try {
      shown = await ohif.showTrackedMeasurement(page, row.index, timeoutMs);
    } catch (err) {
      checks.check(`${o.tag}: tracked finding "${label}" shows its area`, false, `${err.message.split('\n')[0]}; row ${row.lines.join(' | ')}`);
      continue;
    }
    const k = series.slices.findIndex((sl) => sl.sopInstanceUID === shown.sopInstanceUID);
    const instance = (shown.lines.find((l) => /^S: \S+ I: \S+$/.test(l)) || '').replace(/^S: \S+ I: /, '');
    checks.check(
      `${o.tag}: tracked finding "${label}" is on a slice that has it`,
      k >= 0 && countLabel(labelMap, k, f.label) > 0 && String(series.slices[k].instanceNumber) === instance,
      `slice ${k + 1} (instance ${k >= 0 ? series.slices[k].instanceNumber : '?'}), panel says instance ${instance}, ${k >= 0 ? countLabel(labelMap, k, f.label) : 0} px of the finding there`,
    );
    if (k < 0) continue;
    const areaLine = shown.lines.find((l) => / mm²$/.test(l));
    const shownArea = areaLine ? Number(areaLine.replace(/ mm²$/, '')) : NaN;
    const expectedArea = outlinedPixels(labelMap, k, f.label) * rowSpacing * columnSpacing;
    // OHIF prints whole mm² above 100 (and recomputes the area from the drawn outline).
    checks.check(
      `${o.tag}: tracked finding "${label}" shows its area on that slice`,
      Math.abs(shownArea - expectedArea) <= 0.5 + 0.01 * expectedArea,
      `shown "${areaLine || '(no area)'}", label map ${expectedArea.toFixed(2)} mm2 for its outlined region, ${(countLabel(labelMap, k, f.label) * rowSpacing * columnSpacing).toFixed(2)} mm2 in all (tolerance 1%)`,
    );
    await page.screenshot({ path: shot(`tracked-${f.label}`) });
  }
  checks.check(`${o.tag}: no error boundary after tracking the SR`, !(await ohif.errorBoundaryText(page, problems)), await ohif.errorBoundaryText(page, problems));
  checks.check(`${o.tag}: no console error, import failure or HTTP error after tracking the SR`, problemCount() === 0, problemText());
}

/**
 * The SEG + SR that `unibiomed analyze` wrote for a study, opened in OHIF after another study:
 * the SEG loads with every segment of the file (labels as read by dcmdump) in OHIF's segmentation,
 * the SR opens with one measurement per finding of the analysis (summary.json), each linked to
 * a SEG segment and drawn on the slice it references, and nothing
 * goes wrong on the way (no error boundary, console error or HTTP error). The masks of the test
 * checkpoint mean nothing, so the overlay is not compared with an expectation here (the
 * results-write checks do that with a known label map).
 * @param {object} o
 *   o.page, o.baseUrl, o.studyInstanceUID, o.segDescription, o.srDescription,
 *   o.segSegments (readSegments of the SEG), o.findingCount, o.artifacts, o.checks, o.log,
 *   o.timeoutMs, o.problems (watchPage result)
 */
async function checkAnalyzeOutput(o) {
  const { page, checks, timeoutMs, problems } = o;
  const tag = 'analyze';
  const shot = (name) => path.join(o.artifacts, `${tag}-${name}.png`);
  const kinds = ['consoleErrors', 'errorBoundaries', 'pageErrors', 'httpErrors', 'failedRequests', 'warnings'];
  const before = Object.fromEntries(kinds.map((k) => [k, problems[k].length]));
  const newProblems = () => kinds.flatMap((k) => problems[k].slice(before[k]).map((e) => `${k}: ${e}`));

  await ohif.openStudy(page, o.baseUrl, o.studyInstanceUID, timeoutMs, { firstInProfile: false });
  await ohif.waitForSeriesEntries(page, 3, timeoutMs);
  o.log('OHIF shows the analysed study');

  let segmentation;
  try {
    segmentation = await ohif.loadSegmentation(page, o.segDescription, timeoutMs, problems);
  } catch (err) {
    await page.screenshot({ path: shot('seg-load-failed') });
    checks.check(`${tag}: OHIF loads the SEG "${o.segDescription}"`, false, `${err.message.split('\n')[0]}\n    ${newProblems().join('\n    ')}`);
    return;
  }
  const expected = o.segSegments.map((s) => s.label);
  const shown = segmentation.segments.map((s) => s.label);
  checks.check(
    `${tag}: OHIF loads the SEG "${o.segDescription}" with its ${expected.length} segments`,
    expected.length > 0 && expected.every((l) => shown.includes(l)) && shown.length === expected.length,
    `file ${JSON.stringify(expected)}, OHIF ${JSON.stringify(shown)}`,
  );
  await page.screenshot({ path: shot('seg') });

  let report;
  try {
    report = await ohif.loadStructuredReport(page, o.srDescription, timeoutMs, problems);
  } catch (err) {
    await page.screenshot({ path: shot('sr-load-failed') });
    checks.check(`${tag}: OHIF opens the SR "${o.srDescription}"`, false, `${err.message.split('\n')[0]}\n    ${newProblems().join('\n    ')}`);
    return;
  }
  checks.check(
    `${tag}: OHIF opens the SR "${o.srDescription}" with one measurement per finding`,
    report.measurements.length === o.findingCount,
    `${report.measurements.length} measurements, ${o.findingCount} findings`,
  );
  // Each finding: linked to its SEG segment by tracking UID, and drawn with its text on the
  // slice it references.
  for (const m of report.measurements) {
    // The finding's readable label (the SR's first Comment, OHIF's first label), for the names.
    const name = (m.labels && m.labels[0] && m.labels[0].label) || m.trackingIdentifier;
    const segment = o.segSegments.find((x) => x.trackingUid === m.trackingUniqueIdentifier);
    checks.check(`${tag}: SR finding "${name}" shares its tracking UID with a SEG segment`, Boolean(segment),
      `SR ${m.trackingUniqueIdentifier}; SEG ${o.segSegments.map((x) => x.trackingUid).join(', ')}`);
    let shownError = '';
    try {
      await ohif.showFinding(page, m, timeoutMs);
    } catch (err) {
      shownError = err.message.split('\n')[0];
    }
    const drawn = await ohif.drawnFinding(page, m.trackingUniqueIdentifier);
    checks.check(`${tag}: SR finding "${name}" is drawn on the slice it references`,
      !shownError && drawn.shown && drawn.sopInstanceUID === m.referencedSOPInstanceUID,
      `${shownError ? `${shownError}; ` : ''}shown ${drawn.shown} on ${drawn.sopInstanceUID}, referenced ${m.referencedSOPInstanceUID}`);
  }
  await page.screenshot({ path: shot('sr') });
  const errorBoundary = await ohif.errorBoundaryText(page, problems);
  checks.check(`${tag}: no error boundary, console error or HTTP error`, !errorBoundary && newProblems().length === 0,
    [errorBoundary, ...newProblems()].filter(Boolean).join('\n    '));
}

/** Starts Chromium with the flags above and a fresh profile in `profileDir`. */
async function launchChromium(profileDir) {
  const { chromium } = require('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-viewer.sh`);
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1400, height: 900 },
    deviceScaleFactor: 1,
  });
  return context;
}

module.exports = { Checks, checkSegAndSr, checkAnalyzeOutput, launchChromium, countLabel };
