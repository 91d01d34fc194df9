// The slide viewer test: what a pathologist sees of the node's results for a whole slide.
//
//   1. `unibiomed samples write --only wsi` makes the synthetic slide (a VL Whole Slide
//      Microscopy pyramid of 3 levels, 2048x1536 at 0.25 um, 256-px tiles, H&E-like tissue with
//      a tumour); `unibiomed analyze` writes its tiled SEG (TILED_SPARSE, on the analysed level's
//      total pixel matrix) and its TID 1500 SR (each finding's outline an SCOORD on that matrix,
//      the finding naming its segment). By default with samples/demo-checkpoint and the default
//      task rules; --model and --ask change that (fixture checkpoints while developing).
//      A slide without SEG or without findings fails: there would be nothing to show.
//   2. Debian's Orthanc with the DICOMweb plugin stores the slide, the SEG and the SR (loopback
//      ports chosen now, orthanc.js).
//   3. dicom-microscopy-viewer (npm, the library Slim and OHIF's microscopy mode are built on),
//      served same-origin with a small page (slide_server.js, slide_page.html, slide_page.js) and
//      driven in Debian's chromium by playwright-core, opens the slide from DICOMweb, adds the
//      SEG's segments and the SR's findings as regions of interest.
//      Why not OHIF: OHIF 3.13.2's microscopy mode registers SOP class handlers for the slide
//      (DicomMicroscopySopClassHandler), Comprehensive 3D SR and Bulk Simple Annotations only
//      (modes/microscopy in the cached @ohif/app build); it has none for Segmentation Storage, so
//      it cannot show a slide's SEG at all.
//   4. Checks (slide_checks.js for the pixels; every viewport pixel is mapped to the total pixel
//      matrix through the viewer's own map view): the level's pixels are on screen where they
//      belong; the overlay of the segments lies on the SEG's mask and covers it; the regions are
//      as many as the findings, labelled, inside their segments' boxes and drawn there; no console
//      error. Screenshots are kept (--screenshots-to copies the three main ones, for docs/images).
//
// usage: node slide_viewer_test.js --unibiomed PATH [--model DIR] [--ask TEXT] [--out DIR]
//        [--screenshots-to DIR] [--timeout-ms N]
// Prints one line per check and "N passed, N failed"; exit 0 only when nothing failed.
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const path = require('path');
const { runUnibiomed, mustRunUnibiomed, parseTestArgs, startTestRun, stopAll } = require('./unibiomed_cli.js');

const { startOrthanc } = require('./orthanc.js');
const { startSlideServer } = require('./slide_server.js');
const { Checks, launchChromium } = require('./viewer_checks.js');
const px = require('./slide_checks.js');

/** The npm packages of package.json, or an error that says how to install them. */
function npmPackages() {
  const missing = ['dcmjs', 'dicom-microscopy-viewer', 'dicomweb-client', 'playwright-core'].filter((name) => !fs.existsSync(path.join(__dirname, 'node_modules', name, 'package.json')));
  if (missing.length) throw new Error(`npm packages missing in ${__dirname}/node_modules: ${missing.join(', ')}; run scripts/install-viewer.sh (npm ci there)`);
  return require('./slide_data.js');
}

const DEMO_MODEL = path.join(__dirname, '..', '..', 'samples', 'demo-checkpoint');

// Tolerances (see the checks for what each guards against):
// The level drawn at one screen pixel per level pixel: the only changes are the viewer's ICC
// transform (the slide's sRGB profile to sRGB) and WebGL rounding; measured 0.6 of 255 on average
// and no pixel beyond FAR. A slide misplaced by a tile, or not turned as its Image Orientation
// (Slide) says, is at 15 on average with about a fifth of its pixels beyond FAR.
const LEVEL_MEAN = 4;
const LEVEL_FAR = 48;
const LEVEL_FAR_SHARE = 0.01;
// A pixel counts as drawn over when |dR|+|dG|+|dB| > CHANGE between two screenshots of the same
// view: the same state drawn twice is identical, and the segment colour (viridis' top, 70 %
// opacity) or the region outline changes a pixel by 100 or more on this slide's colours.
const CHANGE = 24;
// Segments: at one screen pixel per SEG pixel, nearest-neighbour, an edge may fall on the
// neighbouring pixel (the viewer places pixel centres at +0.5, the comparison samples the
// viewport pixel's centre), hence 1 pixel of slack both ways. Then nearly all drawn pixels must
// lie on the mask, nearly all of the mask's core must be drawn, and the pixels wrong either way
// must stay under SEG_MISPLACED per pixel of the mask's boundary: the share tests alone would let
// a large mask move by a few pixels (on the fixture's mask of 380000 pixels a 3-pixel shift still
// leaves 99.4 % inside), the boundary measure does not (measured: 0 as drawn, 0.16 for an
// overlay 2 pixels off, 0.45 for 3).
const SEG_SLACK = 1;
const SEG_INSIDE = 0.99;
const SEG_COVERED = 0.95;
const SEG_MISPLACED = 0.05;
const SEG_EACH_COVERED = 0.9;
// Regions: outlines 2 px wide around polygons along pixel edges, their slide coordinates rounded
// to 0.1 um by the viewer's transforms (0.2 px here): the outline may reach 3 px beyond the
// segment's box; a vertex counts as drawn with a changed pixel within 2 px of it.
const ROI_BOX_SLACK = 1; // in level pixels, for the region's geometry read back from the viewer
const ROI_DRAWN_SLACK = 3; // in viewport pixels, for what it drew
const ROI_VERTEX_RADIUS = 2;
const ROI_INSIDE = 0.99; // share of the pixels the outlines changed that lie within the boxes + slack
const ROI_VERTICES_DRAWN = 0.9;
// The screenshots copied to --screenshots-to (docs/images) are scaled by DOCS_SCALE, their
// channels rounded to multiples of DOCS_STEP (slide_page.js shrinkPng).
const DOCS_SCALE = 0.7;
const DOCS_STEP = 8;

function parseArgs(argv) {
  const options = { unibiomed: null, model: DEMO_MODEL, ask: null, out: path.resolve('slide-viewer-test-output'), screenshotsTo: null, timeoutMs: 60000 };
  const usage =
    'usage: node slide_viewer_test.js --unibiomed PATH [--model DIR] [--ask TEXT] [--out DIR] [--screenshots-to DIR] [--timeout-ms N]\n' +
    `  --model DIR   checkpoint to analyse with (default ${DEMO_MODEL})\n` +
    '  --ask TEXT    ask only this question (--no-rules --ask TEXT) instead of the default task rules';
  return parseTestArgs(argv, options, usage, {
    '--model': (v) => { options.model = path.resolve(v); },
    '--ask': (v) => { options.ask = v; },
    '--screenshots-to': (v) => { options.screenshotsTo = path.resolve(v); },
  });
}

function unibiomed(options, args, log) {
  return runUnibiomed(options.unibiomed, args, log);
}

function mustRun(options, args, log) {
  return mustRunUnibiomed(options.unibiomed, args, log);
}

/**
 * Everything the page reports that a user would see as a failure (as ohif_page.js watchPage), and
 * the slide's frame requests. Console warnings are not failures: dicom-microscopy-viewer warns
 * "could not load tile ... this tile does not exist" for every tile a TILED_SPARSE SEG leaves
 * out, which is what that organisation is for.
 */
function watchPage(page, slideSeriesUID) {
  const problems = { consoleErrors: [], pageErrors: [], httpErrors: [], failedRequests: [], frames: { requested: 0, answered: 0, failed: 0 } };
  page.on('console', (m) => {
    if (m.type() === 'error') problems.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => problems.pageErrors.push(e.stack || e.message));
  page.on('request', (r) => {
    if (r.url().includes(`/series/${slideSeriesUID}/`) && r.url().includes('/frames/')) problems.frames.requested++;
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.httpErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    else if (r.url().includes(`/series/${slideSeriesUID}/`) && r.url().includes('/frames/')) problems.frames.answered++;
  });
  page.on('requestfailed', (r) => {
    const reason = r.failure() ? r.failure().errorText : 'failed';
    if (!/ERR_ABORTED/.test(reason)) problems.failedRequests.push(`${r.method()} ${r.url()}: ${reason}`);
    if (r.url().includes(`/series/${slideSeriesUID}/`) && r.url().includes('/frames/')) problems.frames.failed++;
  });
  return problems;
}

/** page.evaluate of a slidePage function, failing after timeoutMs instead of hanging. */
async function call(page, name, arg, timeoutMs) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`slidePage.${name} did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([page.evaluate(({ n, a }) => window.slidePage[n](a), { n: name, a: arg }), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const pct = (x) => `${(100 * x).toFixed(1)} %`;

/** The slide's files and levels from the manifest `samples write` wrote. */
function findSlide(samplesDir, readLevelHeader) {
  const manifest = JSON.parse(fs.readFileSync(path.join(samplesDir, 'manifest.json'), 'utf8'));
  const entry = manifest.find((m) => m.name === 'wsi');
  if (!entry) throw new Error(`no wsi sample in ${samplesDir}/manifest.json`);
  const levels = entry.files.map((f) => readLevelHeader(path.join(samplesDir, f))).filter((h) => h.imageType[2] === 'VOLUME');
  levels.sort((a, b) => b.totalColumns - a.totalColumns); // base first
  return { entry, levels, files: entry.files.map((f) => path.join(samplesDir, f)) };
}

/** The SEG and SR `unibiomed analyze` wrote (summary.json objects), and its findings. */
function analysisOutput(dir) {
  const summaryFile = path.join(dir, 'summary.json');
  if (!fs.existsSync(summaryFile)) throw new Error(`unibiomed analyze wrote no ${summaryFile}`);
  const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
  const objects = summary.objects || [];
  const segs = objects.filter((o) => o.kind === 'SEG').map((o) => path.join(dir, o.file));
  const srs = objects.filter((o) => o.kind === 'SR').map((o) => path.join(dir, o.file));
  return { summary, segs, sr: srs[0] || null };
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const { readSlideLevel, readSegmentation, readSrFindings, readLevelHeader } = npmPackages();
  const { log, work, artifacts } = startTestRun(options);
  const checks = new Checks(log);

  // --- data ---------------------------------------------------------------------
  const samplesDir = path.join(work, 'samples');
  mustRun(options, ['samples', 'write', samplesDir, '--only', 'wsi'], log);
  const slide = findSlide(samplesDir, readLevelHeader);
  const base = slide.levels[0];
  log(`slide ${base.seriesInstanceUID}: ${slide.levels.map((l) => `${l.totalColumns}x${l.totalRows}`).join(', ')}`);

  const analysisDir = path.join(work, 'analysis');
  const analyzeArgs = ['analyze', samplesDir, '-o', analysisDir, '--model', options.model, '--seed', 'slide-viewer', '--no-previews'];
  if (options.ask) analyzeArgs.push('--no-rules', '--ask', options.ask);
  const analysis = unibiomed(options, analyzeArgs, log);
  if (analysis.status !== 0) throw new Error(`unibiomed analyze failed (exit ${analysis.status}):\n${analysis.output}`);
  const out = analysisOutput(analysisDir);
  const sayWhy = () => {
    const s = out.summary;
    const lines = [...(s.answers || []).map((a) => `answer: ${a}`), ...(s.series || []).flatMap((x) => [`series ${x.description}: ${x.state}, tasks ${(x.tasks || []).join(', ')}`, ...(x.notes || []).map((n) => `note: ${n}`)])];
    return lines.join('; ');
  };
  const model = options.ask ? `${options.model} asked "${options.ask}"` : `${options.model} with the default task rules`;
  checks.check(`analysis: unibiomed analyze (${model}) wrote a SEG of the slide`, out.segs.length === 1, out.segs.length ? out.segs.map((f) => path.basename(f)).join(', ') : `no SEG; nothing for a viewer to show (${sayWhy()})`);
  const expected = out.sr ? readSrFindings(out.sr) : { findings: [] };
  const summaryFindings = (out.summary.findings || []).length;
  checks.check(
    'analysis: the SR has findings, as many as summary.json lists',
    expected.findings.length > 0 && expected.findings.length === summaryFindings,
    out.sr ? `${expected.findings.length} in ${path.basename(out.sr)}, ${summaryFindings} in summary.json` : 'no SR',
  );
  if (!out.segs.length || !expected.findings.length) log('the slide is still opened in the viewer, to check what can be checked');

  let seg = null;
  let level = null; // the slide level the SEG lies on
  if (out.segs.length) {
    seg = readSegmentation(out.segs[0]);
    level = slide.levels.find((l) => l.totalColumns === seg.totalColumns && l.totalRows === seg.totalRows);
    const same = (a, b) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) < 1e-9);
    checks.check(
      'SEG: tiled (TILED_SPARSE) on the total pixel matrix of a slide level, with its frame of reference, origin, orientation and pixel spacing',
      Boolean(level) && seg.dimensionOrganizationType === 'TILED_SPARSE' && seg.frameOfReferenceUID === base.frameOfReferenceUID &&
        same(seg.offset, level.offset) && same(seg.orientation, level.orientation) && same(seg.pixelSpacing, level.pixelSpacing),
      `${seg.segmentationType} ${seg.dimensionOrganizationType}, ${seg.totalColumns}x${seg.totalRows} at ${seg.pixelSpacing.map((s) => s * 1000).join('/')} um` +
        (level ? ` = level ${slide.levels.indexOf(level)}` : ' = no level of the slide'),
    );
    const empty = [...seg.segments].filter(([, s]) => !s.pixels).map(([n]) => n);
    checks.check('SEG: every segment has pixels', seg.segments.size > 0 && empty.length === 0, `${seg.segments.size} segments, ${seg.union.reduce((n, v) => n + v, 0)} mask pixels${empty.length ? `; empty: ${empty.join(', ')}` : ''}`);
  }
  // The view: one screen pixel per pixel of the SEG's level (else of level 1); for level 1 of
  // this slide (1024 x 768, the size of the page's map) that is the whole slide.
  const viewLevel = level || slide.levels[Math.min(1, slide.levels.length - 1)];
  const resolution = base.totalColumns / viewLevel.totalColumns;
  const scale = 1 / resolution; // level pixels per base pixel

  // --- servers and browser --------------------------------------------------------
  const cleanup = [];
  let exitCode = 1;
  const shots = {};
  try {
    const orthanc = await startOrthanc(path.join(work, 'orthanc'));
    cleanup.push(() => orthanc.stop());
    for (const file of [...slide.files, ...out.segs, ...(out.sr ? [out.sr] : [])]) await orthanc.upload(file);
    const server = await startSlideServer({ orthancPort: orthanc.httpPort, onProxyError: log });
    cleanup.push(() => server.close());
    log(`Orthanc on 127.0.0.1:${orthanc.httpPort}, the slide page at ${server.url}/`);
    const browser = await launchChromium(path.join(work, 'chromium-profile'));
    cleanup.push(() => browser.close());
    const page = browser.pages()[0] || (await browser.newPage());
    const problems = watchPage(page, base.seriesInstanceUID);
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => Boolean(window.slidePage && window.dicomMicroscopyViewer), null, { timeout: options.timeoutMs });

    const clip = { x: 0, y: 0, width: 1024, height: 768 };
    /** A screenshot of the map's layers only (no controls, no overlays), decoded. */
    const bareShot = async (name) => {
      await call(page, 'setBare', true, options.timeoutMs);
      const png = await page.screenshot({ clip, path: path.join(artifacts, `check-${name}.png`) });
      await call(page, 'setBare', false, options.timeoutMs);
      return px.decodePng(png);
    };
    /** What a user sees: viewer and list, saved as slide-viewer-NAME.png. */
    const userShot = async (name) => {
      const height = await page.evaluate(() => Math.ceil(Math.max(768, document.getElementById('panel').getBoundingClientRect().bottom + 8)));
      const file = path.join(artifacts, `slide-viewer-${name}.png`);
      const png = await page.screenshot({ clip: { x: 0, y: 0, width: 1400, height: Math.min(height, 900) }, path: file });
      // The copy for docs/images, smaller: the noisy synthetic H&E makes a full-size PNG about
      // 1 MB.
      const small = await call(page, 'shrinkPng', { base64: png.toString('base64'), factor: DOCS_SCALE, step: DOCS_STEP }, options.timeoutMs);
      const docsFile = path.join(artifacts, 'docs', `slide-viewer-${name}.png`);
      fs.mkdirSync(path.dirname(docsFile), { recursive: true });
      fs.writeFileSync(docsFile, Buffer.from(small, 'base64'));
      shots[name] = docsFile;
    };

    // The slide.
    const opened = await call(page, 'openSlide', { studyInstanceUID: base.studyInstanceUID, seriesInstanceUID: base.seriesInstanceUID, resolution }, options.timeoutMs);
    const view = opened.view;
    log(`the viewer shows the slide: rotation ${(view.rotation * 180 / Math.PI).toFixed(0)} deg, ${view.resolution} base pixels per screen pixel, ${problems.frames.requested} frames requested`);
    await userShot('slide');
    const slideShot = await bareShot('slide');
    // The overview map loads its own (coarsest) tiles, and may still be at it when the main map
    // has drawn: wait until every frame request has been answered or has failed.
    for (let waited = 0; problems.frames.answered + problems.frames.failed < problems.frames.requested && waited < options.timeoutMs; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const levelPixels = readSlideLevel(viewLevel.file);
    const levelLookup = px.viewportToMatrix(view, slideShot.width, slideShot.height, levelPixels, scale);
    checks.check(
      'slide: the viewer fetched the level tiles from Orthanc\'s DICOMweb and every frame request was answered',
      problems.frames.requested > 0 && problems.frames.answered === problems.frames.requested,
      `${problems.frames.answered} of ${problems.frames.requested} frame requests answered`,
    );
    const onScreen = px.compareWithLevel(slideShot, levelLookup, levelPixels, { far: LEVEL_FAR });
    checks.check(
      `slide: the viewport shows level ${slide.levels.indexOf(viewLevel)}'s pixels where they belong (mean |difference| <= ${LEVEL_MEAN}, pixels off by > ${LEVEL_FAR} <= ${pct(LEVEL_FAR_SHARE)})`,
      onScreen.pixels > 0.5 * slideShot.width * slideShot.height && onScreen.meanDifference <= LEVEL_MEAN && onScreen.farShare <= LEVEL_FAR_SHARE,
      `${onScreen.pixels} pixels compared: mean ${onScreen.meanDifference.toFixed(2)}, off ${pct(onScreen.farShare)}`,
    );

    // The segments.
    let segShot = null;
    let segLookup = null;
    if (seg) {
      const segments = await call(page, 'addSegmentation', { studyInstanceUID: base.studyInstanceUID, seriesInstanceUID: seg.seriesInstanceUID }, options.timeoutMs);
      const wanted = [...seg.segments].map(([n, s]) => ({ n, label: s.label, uid: s.trackingUID }));
      const listed = await page.evaluate(() => window.slidePage.listedLabels());
      checks.check(
        'segments: the viewer holds the SEG\'s segments, each with its number and label, and the page lists them',
        segments.length === wanted.length && wanted.every((w) => segments.some((s) => s.number === w.n && s.label === w.label)) &&
          wanted.every((w) => listed.segments.includes(`#${w.n} ${w.label}`)),
        segments.map((s) => `#${s.number} ${s.label}`).join('; '),
      );
      const visible = await call(page, 'showSegments', true, options.timeoutMs);
      log(`segments shown (${visible.filter(Boolean).length} of ${visible.length} visible)`);
      await userShot('segment');
      segShot = await bareShot('segment');
      segLookup = px.viewportToMatrix(view, segShot.width, segShot.height, seg, scale);
      const changed = px.changedPixels(slideShot, segShot, CHANGE);
      const all = px.compareWithMask(changed, segLookup, seg, seg.union, { slack: SEG_SLACK });
      const passes = (r) => r.changed > 0 && r.inside >= SEG_INSIDE && r.covered >= SEG_COVERED && r.misplacedPerBoundary <= SEG_MISPLACED;
      checks.check(
        `segment overlay: drawn on the mask (>= ${pct(SEG_INSIDE)} of the changed pixels within ${SEG_SLACK} px of it), covering it (>= ${pct(SEG_COVERED)} of its core), <= ${SEG_MISPLACED} misplaced pixels per boundary pixel`,
        passes(all),
        `${all.changed} pixels changed, ${pct(all.inside)} on the mask; ${pct(all.covered)} of ${all.corePixels} core pixels drawn; ${all.misplacedPerBoundary.toFixed(3)} misplaced per boundary pixel (${all.boundary})`,
      );
      let worst = null;
      for (const [n, s] of seg.segments) {
        if (!s.pixels) continue;
        const r = px.compareWithMask(changed, segLookup, seg, s.mask, { slack: SEG_SLACK });
        if (!worst || r.covered < worst.covered) worst = { n, ...r };
      }
      checks.check(
        `segment overlay: every segment is drawn (>= ${pct(SEG_EACH_COVERED)} of each one's core)`,
        Boolean(worst) && worst.covered >= SEG_EACH_COVERED,
        worst ? `least covered: segment ${worst.n}, ${pct(worst.covered)} of ${worst.corePixels} core pixels` : 'no segment',
      );
      // The control: the same comparison against the mask turned by 180 degrees (what a viewer
      // that ignored Image Orientation (Slide) would show) must not pass, or the check above
      // could not tell a misplaced overlay from a right one on this mask (it fails, for
      // instance, for a mask that covers the whole level, as a random fixture checkpoint can
      // write: then the overlay check proves nothing).
      const turned = px.compareWithMask(changed, segLookup, seg, px.rotate180(seg.union), { slack: SEG_SLACK });
      checks.check(
        'segment overlay control: the same comparison fails for the mask turned by 180 degrees (else it proves nothing on this mask)',
        !passes(turned),
        `turned mask: ${pct(turned.inside)} on it, ${pct(turned.covered)} covered, ${turned.misplacedPerBoundary.toFixed(2)} misplaced per boundary pixel`,
      );
    }

    // The SR's findings as regions of interest.
    if (out.sr) {
      const added = await call(page, 'addAnnotations', { studyInstanceUID: base.studyInstanceUID, seriesInstanceUID: expected.seriesInstanceUID, frameOfReferenceUID: base.frameOfReferenceUID }, options.timeoutMs);
      const rois = added.rois;
      checks.check(
        'annotations: the viewer holds one region of interest per SR finding',
        expected.findings.length > 0 && rois.length === expected.findings.length && added.problems.length === 0,
        `${rois.length} regions for ${expected.findings.length} findings${added.problems.length ? `; ${added.problems.join('; ')}` : ''}`,
      );
      const listed = await page.evaluate(() => window.slidePage.listedLabels());
      const labelled = expected.findings.map((f) => {
        const roi = rois.find((r) => r.uid === f.trackingUID);
        return { f, roi, ok: Boolean(roi) && roi.label === f.label && listed.annotations.includes(f.label) };
      });
      checks.check(
        'annotations: each region carries its finding\'s label (the SR\'s first Comment), and the page lists it',
        labelled.length > 0 && labelled.every((x) => x.ok),
        labelled.map((x) => `${x.roi ? `"${x.roi.label}"` : 'missing'}${x.ok ? '' : ` (want "${x.f.label}")`}`).join('; '),
      );
      if (seg) {
        // The geometry the viewer holds, back on the level's matrix, against the segment's box.
        const outside = [];
        const slideToLevel = (p) => {
          // Inverse of the page's mapping (dicom-microscopy-viewer utils.buildTransform, pixel
          // centres at +0.5): slide (x, y) in mm to (column, row) on the SEG's matrix.
          const [o0, o1] = seg.offset;
          const o = seg.orientation;
          const [sr, sc] = seg.pixelSpacing;
          const a = o[0] * sc, b = o[3] * sr, c = o[1] * sc, d = o[4] * sr;
          const det = a * d - b * c;
          const x = p[0] - o0, y = p[1] - o1;
          return [(d * x - b * y) / det + 0.5, (a * y - c * x) / det + 0.5];
        };
        for (const { f, roi } of labelled) {
          if (!roi) continue;
          const s = f.segment && seg.segments.get(f.segment.segmentNumber);
          if (!s || !s.box) {
            outside.push(`${roi.label}: no segment`);
            continue;
          }
          const pts = roi.coordinates.map(slideToLevel);
          const bad = pts.filter(([c, r]) => c < s.box.minColumn - ROI_BOX_SLACK || c > s.box.maxColumn + 1 + ROI_BOX_SLACK || r < s.box.minRow - ROI_BOX_SLACK || r > s.box.maxRow + 1 + ROI_BOX_SLACK);
          if (bad.length) outside.push(`segment ${f.segment.segmentNumber}: ${bad.length} of ${pts.length} vertices outside its box, e.g. (${bad[0].map((v) => v.toFixed(1)).join(', ')})`);
        }
        checks.check(
          `annotations: each region lies within its segment's bounding box on the level (+-${ROI_BOX_SLACK} px)`,
          labelled.length > 0 && labelled.every((x) => x.roi) && outside.length === 0,
          outside.length ? outside.join('; ') : `${labelled.length} regions inside their boxes`,
        );
        // What the viewer drew for them: outlines within the boxes, and at their vertices.
        await call(page, 'setROIsVisible', false, options.timeoutMs);
        const before = await bareShot('segment-no-regions');
        await call(page, 'setROIsVisible', true, options.timeoutMs);
        const after = await bareShot('regions');
        const changed = px.changedPixels(before, after, CHANGE);
        const allowed = new Uint8Array(changed.length);
        const perRegion = [];
        for (const { f, roi } of labelled) {
          const s = roi && f.segment && seg.segments.get(f.segment.segmentNumber);
          if (!s || !s.box) continue;
          const corners = [[s.box.minColumn, s.box.minRow], [s.box.maxColumn + 1, s.box.minRow], [s.box.minColumn, s.box.maxRow + 1], [s.box.maxColumn + 1, s.box.maxRow + 1]].map(([c, r]) => px.matrixToViewport(view, scale, c, r));
          const x0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[0]))) - ROI_DRAWN_SLACK);
          const x1 = Math.min(after.width - 1, Math.ceil(Math.max(...corners.map((p) => p[0]))) + ROI_DRAWN_SLACK);
          const y0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[1]))) - ROI_DRAWN_SLACK);
          const y1 = Math.min(after.height - 1, Math.ceil(Math.max(...corners.map((p) => p[1]))) + ROI_DRAWN_SLACK);
          for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) allowed[y * after.width + x] = 1;
          let found = 0;
          // The vertices on the viewport (all of them at this view, which shows the whole level).
          const vertices = roi.coordinates
            .map(slideToLevel)
            .map(([c, r]) => px.matrixToViewport(view, scale, c, r))
            .filter(([vx, vy]) => vx >= -1 && vy >= -1 && vx <= after.width + 1 && vy <= after.height + 1);
          for (const [vx, vy] of vertices) {
            let hit = false;
            for (let y = Math.floor(vy) - ROI_VERTEX_RADIUS; y <= Math.floor(vy) + ROI_VERTEX_RADIUS && !hit; y++) {
              for (let x = Math.floor(vx) - ROI_VERTEX_RADIUS; x <= Math.floor(vx) + ROI_VERTEX_RADIUS && !hit; x++) {
                if (x >= 0 && y >= 0 && x < after.width && y < after.height && changed[y * after.width + x]) hit = true;
              }
            }
            if (hit) found++;
          }
          perRegion.push({ n: f.segment.segmentNumber, share: vertices.length ? found / vertices.length : 0, vertices: vertices.length });
        }
        let changedCount = 0, changedAllowed = 0;
        for (let i = 0; i < changed.length; i++) {
          if (!changed[i]) continue;
          changedCount++;
          changedAllowed += allowed[i];
        }
        const inside = changedCount ? changedAllowed / changedCount : 0;
        const worstRegion = perRegion.reduce((w, r) => (!w || r.share < w.share ? r : w), null);
        checks.check(
          `annotations: the viewer draws each outline at its region (>= ${pct(ROI_INSIDE)} of the changed pixels within the boxes + ${ROI_DRAWN_SLACK} px; >= ${pct(ROI_VERTICES_DRAWN)} of each region's vertices drawn)`,
          changedCount > 0 && inside >= ROI_INSIDE && perRegion.length === labelled.length && worstRegion.share >= ROI_VERTICES_DRAWN,
          `${changedCount} pixels changed, ${pct(inside)} within the boxes; least drawn: segment ${worstRegion ? `${worstRegion.n}, ${pct(worstRegion.share)} of ${worstRegion.vertices} vertices` : 'none'}`,
        );
      }
      await userShot('annotations');
    }

    // Anything the page or the viewer reported as an error.
    const viewerErrors = await page.evaluate(() => window.slidePage.errors());
    const reported = [
      ...problems.consoleErrors.map((e) => `console error: ${e}`),
      ...problems.pageErrors.map((e) => `uncaught: ${e}`),
      ...problems.httpErrors.map((e) => `HTTP ${e}`),
      ...problems.failedRequests.map((e) => `request failed: ${e}`),
      ...viewerErrors.map((e) => `viewer error: ${e}`),
    ];
    checks.check('no console error, page error, failed request or viewer error', reported.length === 0, reported.length ? reported.join('\n    ') : '');
    exitCode = checks.failed.length === 0 ? 0 : 1;
  } catch (err) {
    checks.check('the slide viewer test ran to its end', false, err.stack || err.message);
  } finally {
    await stopAll(cleanup, log);
  }
  if (options.screenshotsTo && Object.keys(shots).length) {
    fs.mkdirSync(options.screenshotsTo, { recursive: true });
    for (const file of Object.values(shots)) fs.copyFileSync(file, path.join(options.screenshotsTo, path.basename(file)));
    log(`copied ${Object.values(shots).map((f) => path.basename(f)).join(', ')} to ${options.screenshotsTo}`);
  }
  log(`screenshots in ${artifacts}`);
  console.log(`${checks.passed.length} passed, ${checks.failed.length} failed`);
  if (checks.failed.length) console.log(`failed:\n  ${checks.failed.join('\n  ')}`);
  return exitCode;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(`slide viewer test: ${err.stack || err.message}`);
      console.log('0 passed, 1 failed');
      process.exit(1);
    },
  );
}
