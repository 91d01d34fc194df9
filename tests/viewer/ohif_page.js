// Drives OHIF 3.13.2 in a playwright-core page the way a radiologist does (open the study,
// double-click a SEG or SR in the study browser, confirm, step through the findings), and
// reads back what it drew through the objects OHIF itself exposes (window.cornerstone,
// window.cornerstoneTools, window.services; OHIF's extensions/cornerstone/src/init.tsx).
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

/**
 * Everything the page reports that a user would see as a failure: console errors, uncaught
 * exceptions, HTTP answers >= 400, failed requests.
 */
function watchPage(page) {
  const problems = { consoleErrors: [], errorBoundaries: [], pageErrors: [], httpErrors: [], failedRequests: [], warnings: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') problems.consoleErrors.push(m.text());
    // Warnings that mean a result object was not read as written: a measurement group the SR
    // import gave up on ("Unable to generate tool state", "No spatial coordinates group found"),
    // and SEG pixel data OHIF could not split into frames (it then fetches frame by frame,
    // which Orthanc 1.10.1 refuses for 1-bit frames).
    else if (m.type() === 'warning' && /Unable to generate tool state|No spatial coordinates|falling back to per-frame|Invalid frame length|calculated length/.test(m.text()))
      problems.warnings.push(m.text().split('\n')[0]);
    // OHIF's route-level error boundary reports what it caught with console.debug ("Route
    // viewer Error Boundary TypeError: ...") and shows at most a toast; the viewport stays
    // black. Seen with an SR measurement group without SCOORD (DICOM-OUTPUT.md).
    else if (/Error Boundary/.test(m.text())) {
      problems.errorBoundaries.push(m.text());
      for (const listener of listeners.splice(0)) listener(m.text());
    }
  });
  // A promise that rejects at the next error boundary report: waits race against it, so that a
  // crash fails at once instead of at the end of a timeout.
  const listeners = [];
  problems.nextErrorBoundary = () =>
    new Promise((_, reject) => listeners.push((text) => reject(new Error(`OHIF error boundary: ${text.split('\n')[0]}`))));
  page.on('pageerror', (e) => problems.pageErrors.push(e.stack || e.message));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.httpErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    const reason = r.failure() ? r.failure().errorText : 'failed';
    // Aborted requests are OHIF cancelling prefetches it no longer needs, not failures.
    if (!/ERR_ABORTED/.test(reason)) problems.failedRequests.push(`${r.method()} ${r.url()}: ${reason}`);
  });
  return problems;
}

/**
 * What OHIF's error boundaries caught: their console reports, and the text of the error
 * notification ("Something went wrong", platform/ui-next ErrorBoundary) if one is shown; '' if
 * none.
 */
async function errorBoundaryText(page, problems) {
  const reported = problems && problems.errorBoundaries.length ? problems.errorBoundaries.join('\n') : '';
  const shown = await page.evaluate(() => {
    const text = document.body ? document.body.innerText : '';
    const m = /Something went wrong[^\n]*(\n[^\n]*){0,3}/.exec(text);
    return m ? m[0] : '';
  });
  return [reported, shown].filter(Boolean).join('\n');
}

/**
 * Opens /viewer for one study, dismisses the onboarding tour and waits until the first image is
 * drawn in a cornerstone viewport.
 */
async function openStudy(page, baseUrl, studyInstanceUID, timeoutMs, { firstInProfile = true } = {}) {
  await page.goto(`${baseUrl}/viewer?StudyInstanceUIDs=${encodeURIComponent(studyInstanceUID)}`);
  // The tour (shepherd.js) appears once per browser profile; the profile is always fresh, so the
  // first study opened shows it and later ones do not.
  if (firstInProfile) await page.getByRole('button', { name: 'Skip all', exact: true }).click({ timeout: timeoutMs });
  await page.waitForFunction(
    () => {
      const cs = window.cornerstone;
      const el = cs && cs.getEnabledElements()[0];
      return Boolean(el && el.viewport.getImageIds && el.viewport.getImageIds().length > 0 && el.viewport.getCurrentImageId());
    },
    null,
    { timeout: timeoutMs },
  );
}

/** The study browser entry (thumbnail or list row) of a series, by modality and description. */
function seriesEntry(page, modality, seriesDescription) {
  return page
    .locator('[data-cy^="study-browser-thumbnail"]')
    .filter({ has: page.locator('[data-cy="series-modality-label"]', { hasText: new RegExp(`^${modality}$`) }) })
    .filter({ has: page.locator('[data-cy="series-description-label"]', { hasText: seriesDescription }) });
}

async function waitForSeriesEntries(page, count, timeoutMs) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-cy^="study-browser-thumbnail"]').length >= n,
    count,
    { timeout: timeoutMs },
  );
}

/**
 * Double-clicks the SEG, answers "Yes" to "Do you want to open this Segmentation?" and waits
 * until OHIF has made a labelmap of it in the viewport.
 * @returns {Promise<{segmentationId: string, segments: {segmentIndex: number, label: string}[]}>}
 */
async function loadSegmentation(page, seriesDescription, timeoutMs, problems) {
  const entry = seriesEntry(page, 'SEG', seriesDescription);
  await entry.first().dblclick({ timeout: timeoutMs });
  await page.getByRole('button', { name: 'Yes', exact: true }).click({ timeout: timeoutMs });
  const crash = problems.nextErrorBoundary();
  crash.catch(() => {});
  const handle = await Promise.race([crash, page.waitForFunction(
    (description) => {
      const ss = window.services.segmentationService;
      const vp = window.cornerstone.getEnabledElements()[0].viewport;
      const seg = ss.getSegmentations().find((s) => s.label === description);
      if (!seg) return null;
      const shown = ss.getSegmentationRepresentations(vp.id).some((r) => r.segmentationId === seg.segmentationId);
      if (!shown) return null;
      const segments = Object.values(seg.segments)
        .filter(Boolean)
        .map((s) => ({ segmentIndex: s.segmentIndex, label: s.label }));
      return { segmentationId: seg.segmentationId, segments };
    },
    seriesDescription,
    { timeout: timeoutMs },
  )]);
  return handle.jsonValue();
}

/**
 * Opens the segmentation side panel and waits until its segment rows (data-cy data-row-title)
 * list every expected label.
 * @returns {Promise<{allListed: boolean, rows: string[]}>}
 */
async function segmentationPanelLabels(page, expectedLabels, timeoutMs) {
  const button = page.locator('[data-cy="panelSegmentation-btn"]');
  if (await button.count()) await button.first().click();
  const rowsNow = () => page.evaluate(() => [...document.querySelectorAll('[data-cy="data-row-title"]')].map((e) => e.textContent.trim()));
  try {
    await page.waitForFunction(
      (labels) => {
        const listed = [...document.querySelectorAll('[data-cy="data-row-title"]')].map((e) => e.textContent.trim());
        return labels.every((l) => listed.includes(l));
      },
      expectedLabels,
      { timeout: timeoutMs },
    );
  } catch (_) {
    // reported by the caller with the rows the panel shows
  }
  const listed = await rowsNow();
  return { allListed: expectedLabels.every((l) => listed.includes(l)), rows: listed };
}

/**
 * In the page: for each slice, draws it with every segment shown and with none, and compares
 * what changed on the viewport canvas with the label map, source pixel by source pixel: where
 * something is drawn, and which segment it is (by colour). Runs where the canvas is, so that
 * only small statistics come back.
 * @param args {segmentationId, geometry, slices: [{sliceIndex, sopInstanceUID,
 *   imagePositionPatient, labels: base64 uint8 rows*columns or null}], segmentIndexOfLabel,
 *   timeoutMs}
 */
async function compareOverlay(page, args) {
  return page.evaluate(async ({ segmentationId, geometry, slices, segmentIndexOfLabel, timeoutMs }) => {
    const cs = window.cornerstone;
    const tools = window.cornerstoneTools;
    const ss = window.services.segmentationService;
    const vp = cs.getEnabledElements()[0].viewport;
    const RENDERED = tools.Enums.Events.SEGMENTATION_RENDERED;
    // Sum of |dR|+|dG|+|dB| above which a canvas pixel counts as drawn over: the same slice drawn
    // twice is identical, and the overlay (fill alpha 0.4-0.5 in OHIF's default style) changes a
    // pixel by far more.
    const DIFF_THRESHOLD = 12;
    const timing = { renders: 0, ms: 0, unstable: 0 };

    const nextSegmentationRender = () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          cs.eventTarget.removeEventListener(RENDERED, onRender);
          reject(new Error(`no ${RENDERED} for viewport ${vp.id} within ${timeoutMs} ms`));
        }, timeoutMs);
        function onRender(evt) {
          if (evt.detail.viewportId !== vp.id) return;
          clearTimeout(timer);
          cs.eventTarget.removeEventListener(RENDERED, onRender);
          resolve();
        }
        cs.eventTarget.addEventListener(RENDERED, onRender);
      });
    const context = vp.canvas.getContext('2d');
    const grab = () => context.getImageData(0, 0, vp.canvas.width, vp.canvas.height).data;
    const same = (a, b) => {
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
      return true;
    };
    // A change is drawn once the segmentation render it causes is on the canvas
    // (SEGMENTATION_RENDERED follows the viewport's IMAGE_RENDERED, cornerstone-tools
    // SegmentationRenderingEngine._triggerRender). After a change of slice the labelmap of the
    // new slice could arrive a frame later, so there the test renders again until two
    // consecutive frames agree.
    const settle = async (change, confirm) => {
      const t = performance.now();
      let done = nextSegmentationRender();
      await change();
      await done;
      timing.renders++;
      let previous = grab();
      for (let attempt = 0; confirm && attempt < 8; attempt++) {
        done = nextSegmentationRender();
        tools.utilities.segmentation.triggerSegmentationRender(vp.id);
        await done;
        timing.renders++;
        const current = grab();
        if (same(previous, current)) break;
        timing.unstable++;
        if (attempt === 7) throw new Error('the viewport never settled (8 renders, each different)');
        previous = current;
      }
      timing.ms += performance.now() - t;
      return previous;
    };
    const allSegments = Object.values(segmentIndexOfLabel);
    const setAllVisible = (visible) => {
      for (const s of allSegments) ss.setSegmentVisibility(vp.id, segmentationId, s, visible);
    };
    const representation = ss.getSegmentationRepresentations(vp.id).find((r) => r.segmentationId === segmentationId);
    const colourOf = Object.fromEntries(allSegments.map((s) => [s, representation.segments[s].color.slice(0, 3)]));

    // Source pixel (column c, row r) centre in patient coordinates (PS3.3 C.7.6.2.1.1), mapped
    // to the canvas by the viewport's own worldToCanvas; the mapping is affine in-plane, so three
    // points give it, and a fourth checks it.
    const world = (ipp, c, r) =>
      [0, 1, 2].map((i) => ipp[i] + c * geometry.columnSpacing * geometry.rowCosine[i] + r * geometry.rowSpacing * geometry.columnCosine[i]);
    const canvasMap = (ipp) => {
      const o = vp.worldToCanvas(world(ipp, 0, 0));
      const dc = vp.worldToCanvas(world(ipp, 1, 0)).map((v, i) => v - o[i]);
      const dr = vp.worldToCanvas(world(ipp, 0, 1)).map((v, i) => v - o[i]);
      const far = vp.worldToCanvas(world(ipp, geometry.columns - 1, geometry.rows - 1));
      const predicted = [0, 1].map((i) => o[i] + (geometry.columns - 1) * dc[i] + (geometry.rows - 1) * dr[i]);
      if (Math.hypot(far[0] - predicted[0], far[1] - predicted[1]) > 0.5) {
        throw new Error(`worldToCanvas is not affine in-plane: ${far} vs ${predicted}`);
      }
      return { o, dc, dr };
    };
    const decode = (b64) => Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const sopOf = (imageId) => {
      const instance = cs.metaData.get('instance', imageId);
      if (instance && instance.SOPInstanceUID) return instance.SOPInstanceUID;
      const m = /\/instances\/([0-9.]+)/.exec(imageId);
      return m ? m[1] : null;
    };

    const imageIds = vp.getImageIds();
    const indexOfSop = new Map(imageIds.map((id, i) => [sopOf(id), i]));
    const dpr = vp.canvas.width / vp.canvas.clientWidth;
    const { rows, columns } = geometry;
    const results = [];
    let visible = true; // the state the previous slice ended in

    for (const slice of slices) {
      const index = indexOfSop.get(slice.sopInstanceUID);
      if (index === undefined) {
        results.push({ sliceIndex: slice.sliceIndex, sopInstanceUID: slice.sopInstanceUID, error: 'slice not in the viewport stack' });
        continue;
      }
      const labels = slice.labels ? decode(slice.labels) : new Uint8Array(rows * columns);
      // Arrive in the state the previous slice ended in, then switch: two renders per slice.
      const first = await settle(() => vp.setImageIdIndex(index), true);
      visible = !visible;
      const second = await settle(async () => setAllVisible(visible), false);
      const on = visible ? second : first;
      const off = visible ? first : second;

      const { o, dc, dr } = canvasMap(slice.imagePositionPatient);
      const width = vp.canvas.width;
      const height = vp.canvas.height;
      // drawn[p]: 0 nothing, else the segment whose colour best explains the change at source
      // pixel p (the change is alpha * (colour - background); compared by direction).
      const drawn = new Uint16Array(rows * columns);
      let offCanvas = 0;
      const onCanvas = new Uint8Array(rows * columns);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < columns; c++) {
          const p = r * columns + c;
          const x = Math.floor((o[0] + c * dc[0] + r * dr[0]) * dpr);
          const y = Math.floor((o[1] + c * dc[1] + r * dr[1]) * dpr);
          if (x < 0 || y < 0 || x >= width || y >= height) continue;
          onCanvas[p] = 1;
          const q = (y * width + x) * 4;
          const d = [on[q] - off[q], on[q + 1] - off[q + 1], on[q + 2] - off[q + 2]];
          if (Math.abs(d[0]) + Math.abs(d[1]) + Math.abs(d[2]) <= DIFF_THRESHOLD) continue;
          let best = -1;
          let bestCos = -2;
          for (const s of allSegments) {
            const k = colourOf[s].map((v, i) => v - off[q + i]);
            const norm = Math.hypot(...k) * Math.hypot(...d);
            const cos = norm > 0 ? (k[0] * d[0] + k[1] * d[1] + k[2] * d[2]) / norm : -1;
            if (cos > bestCos) {
              bestCos = cos;
              best = s;
            }
          }
          drawn[p] = best;
        }
      }
      // Where anything is drawn against where the label map has any label; an edge pixel has an
      // 8-neighbour on the other side of the boundary. Then, for each label, which segment's
      // colour is drawn over its pixels away from its edges.
      const isEdge = (mask, r, c) => {
        const v = mask(r, c);
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            if ((dy || dx) && mask(r + dy, c + dx) !== v) return true;
          }
        }
        return false;
      };
      const inside = (r, c) => r >= 0 && c >= 0 && r < rows && c < columns;
      const any = (r, c) => inside(r, c) && labels[r * columns + c] !== 0;
      const entry = {
        sliceIndex: slice.sliceIndex,
        sopInstanceUID: slice.sopInstanceUID,
        maskPixels: 0,
        drawnPixels: 0,
        edgeMismatches: 0,
        missedInside: 0,
        drawnOutside: 0,
        offCanvas: 0,
        labels: [],
      };
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < columns; c++) {
          const p = r * columns + c;
          const expected = labels[p] !== 0;
          if (expected) entry.maskPixels++;
          if (drawn[p]) entry.drawnPixels++;
          if (!onCanvas[p]) {
            if (expected) entry.offCanvas++;
            continue;
          }
          if ((drawn[p] !== 0) === expected) continue;
          if (isEdge(any, r, c)) entry.edgeMismatches++;
          else if (expected) entry.missedInside++;
          else entry.drawnOutside++;
        }
      }
      for (const label of [...new Set(labels)].filter((l) => l !== 0)) {
        const segmentIndex = segmentIndexOfLabel[label];
        const l = { label, segmentIndex, maskPixels: 0, drawnPixels: 0, wrongSegment: 0, shiftedCheckMismatches: 0 };
        entry.labels.push(l);
        if (segmentIndex === undefined) {
          l.error = `no segment for label ${label}`;
          continue;
        }
        // The comparison must be able to fail: this label's overlay against its mask moved by
        // four source pixels has to show mismatches away from the edges.
        const shifted = (r, c) => inside(r, c - 4) && labels[r * columns + c - 4] === label;
        const own = (r, c) => inside(r, c) && labels[r * columns + c] === label;
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < columns; c++) {
            const p = r * columns + c;
            const mine = drawn[p] === segmentIndex;
            if (own(r, c)) l.maskPixels++;
            if (mine) l.drawnPixels++;
            if (own(r, c) && drawn[p] !== 0 && !mine && !isEdge(own, r, c)) l.wrongSegment++;
            if (mine !== shifted(r, c) && !isEdge(shifted, r, c)) l.shiftedCheckMismatches++;
          }
        }
      }
      results.push(entry);
    }
    setAllVisible(true);
    return { results, canvas: [vp.canvas.width, vp.canvas.height], timing };
  }, args);
}

/** Shows slice `sopInstanceUID` in the viewport and waits until it is drawn. */
async function showSlice(page, sopInstanceUID, timeoutMs) {
  await page.evaluate(
    async ({ sop, timeoutMs }) => {
      const cs = window.cornerstone;
      const vp = cs.getEnabledElements()[0].viewport;
      const ids = vp.getImageIds();
      const index = ids.findIndex((id) => (cs.metaData.get('instance', id) || {}).SOPInstanceUID === sop);
      if (index < 0) throw new Error(`slice ${sop} is not in the viewport`);
      const rendered = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`slice ${sop} not drawn within ${timeoutMs} ms`)), timeoutMs);
        const onRender = () => {
          vp.element.removeEventListener(cs.EVENTS.IMAGE_RENDERED, onRender);
          clearTimeout(timer);
          requestAnimationFrame(() => resolve());
        };
        vp.element.addEventListener(cs.EVENTS.IMAGE_RENDERED, onRender);
      });
      // Already there: render anyway, as any mouse move over the viewport would; annotations
      // added while the slice was shown are drawn at the next render (seen after a SEG).
      if (vp.getCurrentImageIdIndex() === index) {
        vp.render();
        await rendered;
        return;
      }
      await vp.setImageIdIndex(index);
      await rendered;
    },
    { sop: sopInstanceUID, timeoutMs },
  );
}

/**
 * Double-clicks the SR and waits until OHIF has parsed its measurements and made an annotation
 * of each. When OHIF finds the SR "rehydratable" (its shapes map onto editable cornerstone
 * tools) it asks "Do you want to continue tracking measurements for this study?"
 * (TrackedMeasurementsContext, PROMPT_HYDRATE_SR); the test gives `answer`: No keeps the SR as
 * the node wrote it, Yes imports its findings as OHIF's own tracked measurements.
 * @returns {Promise<{rehydratable: boolean, measurements: object[]}>} what OHIF parsed
 */
async function loadStructuredReport(page, seriesDescription, timeoutMs, problems, answer = 'No') {
  const entry = seriesEntry(page, 'SR', seriesDescription);
  await entry.first().dblclick({ timeout: timeoutMs });
  const crash = problems.nextErrorBoundary();
  crash.catch(() => {});
  const handle = await Promise.race([crash, page.waitForFunction(
    (description) => {
      const ds = window.services.displaySetService
        .getActiveDisplaySets()
        .find((d) => d.Modality === 'SR' && d.SeriesDescription === description);
      if (!ds || !ds.isLoaded || !ds.measurements) return null;
      if (!ds.measurements.every((m) => m.loaded)) return null;
      const annotations = window.cornerstoneTools.annotation.state.getAllAnnotations();
      const uids = new Set(annotations.map((a) => a.annotationUID));
      if (!ds.measurements.every((m) => uids.has(m.TrackingUniqueIdentifier))) return null;
      return {
        rehydratable: ds.isRehydratable === true,
        measurements: ds.measurements.map((m) => ({
          trackingIdentifier: m.TrackingIdentifier,
          trackingUniqueIdentifier: m.TrackingUniqueIdentifier,
          labels: m.labels,
          graphicType: m.graphicType,
          referencedSOPInstanceUID: m.ReferencedSOPInstanceUID,
        })),
      };
    },
    seriesDescription,
    { timeout: timeoutMs },
  )]);
  const report = await handle.jsonValue();
  if (report.rehydratable) {
    await page.getByText('Do you want to continue tracking measurements for this study?').waitFor({ timeout: timeoutMs });
    await page.getByRole('button', { name: answer, exact: true }).click({ timeout: timeoutMs });
  }
  return report;
}

/**
 * The Measurements panel of tracked measurements (after answering Yes to "continue tracking"):
 * opens it and waits until it lists `count` rows; returns each row's text lines (number, label,
 * values, finding site, finding, "S: series I: instance").
 */
async function trackedMeasurementRows(page, count, timeoutMs) {
  const button = page.locator('[data-cy="trackedMeasurements-btn"]');
  if (await button.count()) {
    const open = await page.locator('[data-cy^="measurement-table-row-"]').count();
    if (!open) await button.first().click();
  }
  await page.waitForFunction((n) => document.querySelectorAll('[data-cy^="measurement-table-row-"]').length >= n, count, { timeout: timeoutMs });
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-cy^="measurement-table-row-"]')].map((row) => ({
      index: Number(row.getAttribute('data-cy').replace('measurement-table-row-', '')),
      lines: row.innerText.split('\n').map((l) => l.trim()).filter(Boolean),
    })),
  );
}

/**
 * Clicks tracked measurement row `index` (OHIF jumps to its slice) and waits until the row shows
 * an area with its unit, which OHIF computes once the slice is drawn; returns the row's lines.
 */
async function showTrackedMeasurement(page, index, timeoutMs) {
  await page.locator(`[data-cy="measurement-table-row-${index}"] [data-cy="data-row"]`).first().click({ timeout: timeoutMs });
  await page.waitForFunction(
    (i) => {
      const row = document.querySelector(`[data-cy="measurement-table-row-${i}"]`);
      return Boolean(row && / mm²/.test(row.innerText));
    },
    index,
    { timeout: timeoutMs },
  );
  return page.evaluate((i) => {
    const row = document.querySelector(`[data-cy="measurement-table-row-${i}"]`);
    const cs = window.cornerstone;
    const vp = cs.getEnabledElements()[0].viewport;
    return {
      lines: row.innerText.split('\n').map((l) => l.trim()).filter(Boolean),
      sopInstanceUID: (cs.metaData.get('instance', vp.getCurrentImageId()) || {}).SOPInstanceUID,
    };
  }, index);
}

/**
 * What the viewport shows of SR finding `trackingUid`: its drawn shapes (canvas bounding box of
 * their points), the text box lines, the slice shown, and the source-pixel-to-canvas mapping of
 * that slice.
 */
async function drawnFinding(page, trackingUid) {
  return page.evaluate((uid) => {
    const cs = window.cornerstone;
    const vp = cs.getEnabledElements()[0].viewport;
    const svg = vp.element.querySelector('.svg-layer');
    const group = svg && [...svg.querySelectorAll('g[data-annotation-uid]')].find((g) => g.getAttribute('data-annotation-uid') === uid);
    const annotations = window.cornerstoneTools.annotation.state.getAllAnnotations();
    const annotation = annotations.find((a) => a.annotationUID === uid);
    const sop = (cs.metaData.get('instance', vp.getCurrentImageId()) || {}).SOPInstanceUID;
    if (!annotation) return { shown: false, sopInstanceUID: sop };
    // The shapes: the annotation's points, drawn by DICOMSRDisplayTool as SVG polylines/ellipses.
    const points = [];
    for (const list of Object.values(annotation.data.renderableData || {})) {
      for (const shape of list) for (const p of shape) points.push(vp.worldToCanvas(p));
    }
    const shapes = [...svg.querySelectorAll('polyline, ellipse, circle, path')].map((el) => el.tagName);
    const lines = group ? [...group.querySelectorAll('tspan')].map((t) => t.textContent) : [];
    const box = points.length
      ? {
          minX: Math.min(...points.map((p) => p[0])),
          maxX: Math.max(...points.map((p) => p[0])),
          minY: Math.min(...points.map((p) => p[1])),
          maxY: Math.max(...points.map((p) => p[1])),
        }
      : null;
    return {
      shown: Boolean(group),
      sopInstanceUID: sop,
      referencedImageId: annotation.metadata.referencedImageId,
      referencedSOPInstanceUID: (cs.metaData.get('instance', annotation.metadata.referencedImageId) || {}).SOPInstanceUID,
      svgShapes: shapes,
      textLines: lines,
      canvasBox: box,
      color: group ? (group.querySelector('text') || {}).getAttribute?.('fill') : null,
    };
  }, trackingUid);
}

/** The canvas position of source pixel centre (c, r) of the slice shown, via worldToCanvas. */
async function sourcePixelToCanvas(page, geometry, ipp, points) {
  return page.evaluate(
    ({ geometry, ipp, points }) => {
      const vp = window.cornerstone.getEnabledElements()[0].viewport;
      return points.map(([c, r]) =>
        vp.worldToCanvas(
          [0, 1, 2].map(
            (i) => ipp[i] + c * geometry.columnSpacing * geometry.rowCosine[i] + r * geometry.rowSpacing * geometry.columnCosine[i],
          ),
        ),
      );
    },
    { geometry, ipp, points },
  );
}

/**
 * Shows the slice an SR finding refers to (as OHIF's measurement arrows do) and waits until
 * DICOMSRDisplayTool has drawn the finding's text box there.
 */
async function showFinding(page, measurement, timeoutMs) {
  await showSlice(page, measurement.referencedSOPInstanceUID, timeoutMs);
  await page.waitForFunction(
    (uid) => {
      const svg = document.querySelector('.svg-layer');
      const g = svg && [...svg.querySelectorAll('g[data-annotation-uid]')].find((x) => x.getAttribute('data-annotation-uid') === uid);
      return Boolean(g && g.querySelector('tspan'));
    },
    measurement.trackingUniqueIdentifier,
    { timeout: timeoutMs },
  );
}

module.exports = {
  watchPage,
  errorBoundaryText,
  openStudy,
  waitForSeriesEntries,
  loadSegmentation,
  segmentationPanelLabels,
  compareOverlay,
  showSlice,
  loadStructuredReport,
  trackedMeasurementRows,
  showTrackedMeasurement,
  drawnFinding,
  sourcePixelToCanvas,
  showFinding,
};
