// The viewer test: what a radiologist sees of the node's results in OHIF.
//
//   1. `unibiomed samples write` makes the sample CT (512x512, HU); the test draws a known label
//      map with two findings on several slices and `unibiomed results write` turns it into
//      SEG + SR; `unibiomed analyze` writes its own SEG + SR for a second copy of the study.
//   2. Debian's Orthanc with the DICOMweb plugin stores the study (loopback ports chosen now).
//   3. OHIF 3.13.2 (npm @ohif/app, cached by scripts/install-viewer.sh) is served same-origin by
//      viewer_server.js and driven in Debian's chromium by playwright-core.
//   4. Checks (viewer_checks.js): the overlay matches the label map on every slice with a
//      finding, the segment labels are in the panel, the SR opens without error and draws each
//      finding's geometry with its label and measurement; screenshots are kept.
//      The SEG of the 512x512 series is binary with an odd number of frames (11).
//   5. A third study of 75x75 slices (Rows x Columns not a multiple of 8, so the SEG is the 8-bit
//      fractional form) whose SEG has an odd number of segment frames: the overlay is compared
//      voxel by voxel on every slice, and the SR is imported as tracked measurements (the user
//      answers Yes to "continue tracking?"): each finding in the Measurements panel with its
//      label, site and area.
//   6. A fourth study: 3 of those 75x75 slices with one finding on each, so that no source frame
//      is free for the empty frame that would keep the SEG's odd length even: the SEG keeps its
//      padding byte, OHIF fetches its frames one by one (Orthanc serves 8-bit frames) and must
//      still draw it voxel by voxel.
//
// usage: node viewer_test.js --unibiomed PATH [--ohif DIR] [--out DIR] [--timeout-ms N]
// Prints one line per check and "N passed, N failed"; exit 0 only when nothing failed.
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const { startOrthanc } = require('./orthanc.js');
const { startViewerServer } = require('./viewer_server.js');
const { mustRunUnibiomed, parseTestArgs, startTestRun, stopAll } = require('./unibiomed_cli.js');
const { findImageSeries, readSegments, readHeaders, evidenceInstances } = require('./dicom_series.js');
const { makeLabelMap, writeNrrd } = require('./label_map.js');
const { Checks, checkSegAndSr, checkAnalyzeOutput, launchChromium } = require('./viewer_checks.js');
const ohif = require('./ohif_page.js');

const OHIF_VERSION = '3.13.2';

function parseArgs(argv) {
  const options = {
    unibiomed: null,
    ohif: process.env.UNIBIOMED_OHIF_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'unibiomed', `ohif-${OHIF_VERSION}`),
    out: path.resolve('viewer-test-output'),
    timeoutMs: 60000,
  };
  return parseTestArgs(argv, options, 'usage: node viewer_test.js --unibiomed PATH [--ohif DIR] [--out DIR] [--timeout-ms N]', {
    '--ohif': (v) => { options.ohif = path.resolve(v); },
  });
}

/** Runs the unibiomed program; throws with its output when it fails. */
function unibiomed(options, args, log) {
  return mustRunUnibiomed(options.unibiomed, args, log);
}

/**
 * The findings of the known label map, as given to `unibiomed results write --findings`
 * (sr-writer/findings.schema.json). The SR labels each finding "<name> (<site>)" (its first
 * Comment), which OHIF shows in the text box next to the outline and as the tracked
 * measurement's label.
 */
const FINDINGS = [
  {
    label: 1,
    name: 'Liver lesion',
    text: 'A 4 cm round hypodense lesion in the right hepatic lobe.',
    type: { value: '52988006', scheme: 'SCT', meaning: 'Lesion' },
    site: { value: '10200004', scheme: 'SCT', meaning: 'Liver' },
    colour: '#f58231',
  },
  {
    label: 2,
    name: 'Renal lesion',
    text: 'A crescent-shaped lesion of the left kidney.',
    type: { value: '52988006', scheme: 'SCT', meaning: 'Lesion' },
    site: { value: '64033007', scheme: 'SCT', meaning: 'Kidney' },
    colour: '#42d4f4',
  },
];

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const { log, work, artifacts } = startTestRun(options);
  const checks = new Checks(log);

  // --- data ---------------------------------------------------------------------
  unibiomed(options, ['samples', 'write', '--only', 'ct', '--ct-slices', '32', path.join(work, 'samples')], log);
  const series = findImageSeries(path.join(work, 'samples'), 'CT');
  log(`CT series ${series.seriesInstanceUID}: ${series.slices.length} slices of ${series.columns}x${series.rows}`);
  const labelMap = makeLabelMap(series);
  const labelsFile = path.join(work, 'labels.nrrd');
  writeNrrd(labelsFile, series, labelMap);
  const findingsFile = path.join(work, 'findings.json');
  fs.writeFileSync(findingsFile, JSON.stringify(findingsJson(), null, 2));
  const results = path.join(work, 'results');
  unibiomed(options, ['results', 'write', '--source', ...series.slices.map((s) => s.file), '--masks', labelsFile, '--findings', findingsFile, '-o', results], log);
  const segFile = path.join(results, 'seg.dcm');
  const srFile = path.join(results, 'sr.dcm');
  const [segHeader, srHeader] = readHeaders([segFile, srFile]);
  checks.check(
    'results-write: the SR lists the SEG in its evidence (Current Requested Procedure Evidence)',
    evidenceInstances(srFile).includes(segHeader.sopInstanceUID),
    `SEG ${segHeader.sopInstanceUID}`,
  );

  // A second copy of the CT (other UIDs) analysed by `unibiomed analyze` with the project's
  // demo checkpoint (samples/demo-checkpoint, trained on synthetic studies), asked for the liver:
  // the node's own SEG + SR, as a radiologist would open them.
  unibiomed(options, ['samples', 'write', '--only', 'ct', '--ct-slices', '8', '--uid-root', 'unibiomed-viewer-analyze', path.join(work, 'analyze-samples')], log);
  const analyzed = findImageSeries(path.join(work, 'analyze-samples'), 'CT');
  const demoModel = path.join(__dirname, '..', '..', 'samples', 'demo-checkpoint');
  const analyzeOut = path.join(work, 'analyze');
  unibiomed(options, ['analyze', path.join(work, 'analyze-samples'), '-o', analyzeOut, '--model', demoModel, '--no-rules', '--ask', 'Please segment liver in CT.', '--seed', 'viewer', '--no-previews'], log);
  const analyzeFiles = fs.readdirSync(analyzeOut).filter((f) => f.endsWith('.dcm')).map((f) => path.join(analyzeOut, f));
  const analyzeSeg = analyzeFiles.find((f) => path.basename(f).startsWith('seg'));
  const analyzeSr = analyzeFiles.find((f) => path.basename(f) === 'sr.dcm');
  const analyzeSummary = JSON.parse(fs.readFileSync(path.join(analyzeOut, 'summary.json'), 'utf8'));
  if (!analyzeSeg || !analyzeSr) throw new Error(`unibiomed analyze wrote no SEG or no SR: ${analyzeFiles.join(', ')}`);
  const [analyzeSegHeader, analyzeSrHeader] = readHeaders([analyzeSeg, analyzeSr]);

  // A third study: 9 slices of 75x75 (5625 pixels a frame, not a multiple of 8) with the same
  // kind of label map; its SEG holds 6 + 5 = 11 segment frames.
  unibiomed(options, ['samples', 'write', '--only', 'ct', '--ct-slices', '9', '--ct-size', '75', '--uid-root', 'unibiomed-viewer-75', path.join(work, 'small-samples')], log);
  const small = findImageSeries(path.join(work, 'small-samples'), 'CT');
  const smallLabels = makeLabelMap(small);
  const smallSegFrames = smallLabels.labels.reduce((n, l) => n + smallLabels.slices.filter((sl) => sl && sl.includes(l)).length, 0);
  writeNrrd(path.join(work, 'small-labels.nrrd'), small, smallLabels);
  const smallResults = path.join(work, 'small-results');
  unibiomed(options, ['results', 'write', '--source', ...small.slices.map((s) => s.file), '--masks', path.join(work, 'small-labels.nrrd'), '--findings', findingsFile, '-o', smallResults], log);
  const smallSeg = path.join(smallResults, 'seg.dcm');
  const smallSr = path.join(smallResults, 'sr.dcm');
  const [smallSegHeader, smallSrHeader] = readHeaders([smallSeg, smallSr]);
  checks.check(
    `small: the SEG of ${small.columns}x${small.rows} frames is FRACTIONAL OCCUPANCY with 8 bits (OHIF misdraws such frames in BINARY)`,
    small.rows * small.columns % 8 !== 0 && smallSegHeader.segmentationType === 'FRACTIONAL' && smallSegHeader.segmentationFractionalType === 'OCCUPANCY' && smallSegHeader.bitsAllocated === 8,
    `${smallSegHeader.segmentationType} ${smallSegHeader.segmentationFractionalType || ''}, ${smallSegHeader.bitsAllocated} bits`,
  );
  checks.check(
    `small: ${smallSegFrames} segment frames (odd) are written with one empty frame more, so that no padding byte follows the pixels`,
    smallSegFrames % 2 === 1 && smallSegHeader.numberOfFrames === smallSegFrames + 1,
    `${smallSegHeader.numberOfFrames} frames in the SEG`,
  );
  // A fourth study: the middle 3 slices of another 75x75 copy, with only the first finding, which
  // is on each of them: 3 fractional frames of 5625 bytes, and no free source frame for an empty
  // frame, so the pixel data ends with a padding byte.
  unibiomed(options, ['samples', 'write', '--only', 'ct', '--ct-slices', '9', '--ct-size', '75', '--uid-root', 'unibiomed-viewer-75-full', path.join(work, 'full-samples')], log);
  const fullSeries = findImageSeries(path.join(work, 'full-samples'), 'CT');
  const fullAll = makeLabelMap(fullSeries);
  const middle = Math.floor(fullSeries.slices.length / 2);
  const fullKept = [middle - 1, middle, middle + 1];
  const full = { ...fullSeries, slices: fullKept.map((k) => fullSeries.slices[k]) };
  const firstOnly = (slice) => slice && slice.map((v) => (v === FINDINGS[0].label ? v : 0));
  const fullLabels = { ...fullAll, slices: fullKept.map((k) => firstOnly(fullAll.slices[k])), labels: [FINDINGS[0].label] };
  if (!fullLabels.slices.every((sl) => sl && sl.includes(FINDINGS[0].label))) throw new Error('the first finding is not on each of the middle 3 slices');
  writeNrrd(path.join(work, 'full-labels.nrrd'), full, fullLabels);
  const fullFindingsFile = path.join(work, 'full-findings.json');
  fs.writeFileSync(fullFindingsFile, JSON.stringify({ findings: findingsJson().findings.slice(0, 1) }, null, 2));
  const fullResults = path.join(work, 'full-results');
  unibiomed(options, ['results', 'write', '--source', ...full.slices.map((s) => s.file), '--masks', path.join(work, 'full-labels.nrrd'), '--findings', fullFindingsFile, '-o', fullResults], log);
  const fullSeg = path.join(fullResults, 'seg.dcm');
  const fullSr = path.join(fullResults, 'sr.dcm');
  const [fullSegHeader, fullSrHeader] = readHeaders([fullSeg, fullSr]);
  checks.check(
    'full: one finding on each of 3 slices of 75x75 is a FRACTIONAL SEG of 3 frames (no source frame is free for an empty one)',
    fullSegHeader.segmentationType === 'FRACTIONAL' && fullSegHeader.numberOfFrames === 3,
    `${fullSegHeader.segmentationType}, ${fullSegHeader.numberOfFrames} frames`,
  );
  // Its frames are whole bytes (32768 each), so an odd number of frames needs no padding and is
  // written as such: OHIF must load it as it is.
  const segFrames = labelMap.labels.reduce((n, l) => n + labelMap.slices.filter((sl) => sl && sl.includes(l)).length, 0);
  checks.check(
    `results-write: the SEG of ${series.columns}x${series.rows} frames stays BINARY, with an odd number of frames (${segFrames})`,
    segHeader.segmentationType === 'BINARY' && segHeader.bitsAllocated === 1 && segFrames % 2 === 1 && segHeader.numberOfFrames === segFrames,
    `${segHeader.segmentationType}, ${segHeader.bitsAllocated} bits, ${segHeader.numberOfFrames} frames`,
  );

  // --- servers and browser --------------------------------------------------------
  const cleanup = [];
  let exitCode = 1;
  try {
    const orthanc = await startOrthanc(path.join(work, 'orthanc'));
    cleanup.push(() => orthanc.stop());
    for (const file of [...series.slices.map((s) => s.file), segFile, srFile]) await orthanc.upload(file);
    for (const file of [...analyzed.slices.map((s) => s.file), analyzeSeg, analyzeSr]) await orthanc.upload(file);
    for (const file of [...small.slices.map((s) => s.file), smallSeg, smallSr]) await orthanc.upload(file);
    for (const file of [...full.slices.map((s) => s.file), fullSeg, fullSr]) await orthanc.upload(file);
    const server = await startViewerServer({ ohifDir: options.ohif, orthancPort: orthanc.httpPort, onProxyError: log });
    cleanup.push(() => server.close());
    log(`Orthanc on 127.0.0.1:${orthanc.httpPort}, OHIF ${OHIF_VERSION} at ${server.url}`);
    const browser = await launchChromium(path.join(work, 'chromium-profile'));
    cleanup.push(() => browser.close());
    const page = browser.pages()[0] || (await browser.newPage());
    const problems = ohif.watchPage(page);

    await ohif.openStudy(page, server.url, series.studyInstanceUID, options.timeoutMs);
    log('OHIF shows the study');
    await ohif.waitForSeriesEntries(page, 3, options.timeoutMs);
    await checkSegAndSr({
      page,
      checks,
      log,
      problems,
      series,
      labelMap,
      findings: FINDINGS.map((f) => ({ ...f, displayLabel: `${f.name} (${f.site.meaning})` })),
      segDescription: segHeader.seriesDescription,
      srDescription: srHeader.seriesDescription,
      segSegments: readSegments(segFile),
      artifacts,
      tag: 'results-write',
      timeoutMs: options.timeoutMs,
    });
    await checkAnalyzeOutput({
      page,
      checks,
      log,
      problems,
      baseUrl: server.url,
      studyInstanceUID: analyzed.studyInstanceUID,
      segDescription: analyzeSegHeader.seriesDescription,
      srDescription: analyzeSrHeader.seriesDescription,
      segSegments: readSegments(analyzeSeg),
      findingCount: analyzeSummary.findings.length,
      artifacts,
      timeoutMs: options.timeoutMs,
    });
    await ohif.openStudy(page, server.url, small.studyInstanceUID, options.timeoutMs, { firstInProfile: false });
    await ohif.waitForSeriesEntries(page, 3, options.timeoutMs);
    log('OHIF shows the 75x75 study');
    await checkSegAndSr({
      page,
      checks,
      log,
      problems,
      series: small,
      labelMap: smallLabels,
      findings: FINDINGS,
      segDescription: smallSegHeader.seriesDescription,
      srDescription: smallSrHeader.seriesDescription,
      segSegments: readSegments(smallSeg),
      artifacts,
      tag: 'small',
      everySlice: true,
      exact: true,
      srAnswer: 'Yes',
      timeoutMs: options.timeoutMs,
    });
    // Last: the frame-by-frame retrieval it causes is reported as a warning that the checks of
    // the studies before would count.
    await ohif.openStudy(page, server.url, full.studyInstanceUID, options.timeoutMs, { firstInProfile: false });
    await ohif.waitForSeriesEntries(page, 3, options.timeoutMs);
    log('OHIF shows the 3-slice 75x75 study');
    await checkSegAndSr({
      page,
      checks,
      log,
      problems,
      series: full,
      labelMap: fullLabels,
      findings: FINDINGS.slice(0, 1),
      segDescription: fullSegHeader.seriesDescription,
      srDescription: fullSrHeader.seriesDescription,
      segSegments: readSegments(fullSeg),
      artifacts,
      tag: 'full',
      everySlice: true,
      exact: true,
      srAnswer: 'Yes',
      allowedWarning: /falling back to per-frame loads Error: Invalid frame length: 16876 for 3 frames/,
      timeoutMs: options.timeoutMs,
    });
    exitCode = checks.failed.length === 0 ? 0 : 1;
  } catch (err) {
    checks.check('the viewer test ran to its end', false, err.stack || err.message);
  } finally {
    await stopAll(cleanup, log);
  }
  log(`screenshots in ${artifacts}`);
  console.log(`${checks.passed.length} passed, ${checks.failed.length} failed`);
  if (checks.failed.length) console.log(`failed:\n  ${checks.failed.join('\n  ')}`);
  return exitCode;
}

/** The findings file of `unibiomed results write` for FINDINGS. */
function findingsJson() {
  return {
    findings: FINDINGS.map((f) => ({
      label: f.label,
      name: f.name,
      text: f.text,
      type: f.type,
      finding_site: f.site,
      colour: f.colour,
    })),
  };
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(`viewer test: ${err.stack || err.message}`);
      console.log('0 passed, 1 failed');
      process.exit(1);
    },
  );
}

module.exports = { FINDINGS };
