// The slide viewer test's page script: what a slide viewer built on dicom-microscopy-viewer does
// with the node's results (Slim is one), reduced to what the test needs. It opens the slide from
// Orthanc's DICOMweb in a VolumeImageViewer, adds the SEG's segments (addSegments, showSegment)
// and turns the SR's findings into regions of interest (addROI), and lists what the viewer then
// holds. slide_viewer_test.js drives it through window.slidePage and checks the pixels.
// SPDX-License-Identifier: GPL-3.0-or-later
/* global dicomMicroscopyViewer, DICOMwebClient, slideSr */
(function () {
  'use strict';

  const dmv = dicomMicroscopyViewer;
  const state = { client: null, viewer: null, images: [], errors: [], segments: [], findings: [] };

  const list = (v) => (v == null ? [] : Array.isArray(v) ? v : [v]);
  const text = (id, value) => {
    document.getElementById(id).textContent = value;
  };

  function makeClient() {
    return new DICOMwebClient.api.DICOMwebClient({ url: `${window.location.origin}/dicom-web` });
  }

  /** Errors the viewer reports through its errorInterceptor (tile loading, rendering, ...). */
  function intercept(error) {
    state.errors.push(String((error && (error.message || error.description)) || error));
    return error;
  }

  /** Resolves after the map has drawn everything it was loading, and the frame is on screen. */
  function rendered() {
    const map = state.viewer.getMap();
    return new Promise((resolve) => {
      map.once('rendercomplete', () => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      map.render();
    });
  }

  /** Pixel Spacing of a multi-frame image ([between rows, between columns], mm). */
  function pixelSpacing(image) {
    return list(list(image.SharedFunctionalGroupsSequence)[0].PixelMeasuresSequence)[0].PixelSpacing.map(Number);
  }

  function describeImage(image) {
    const origin = list(image.TotalPixelMatrixOriginSequence)[0];
    return {
      sopInstanceUID: image.SOPInstanceUID,
      totalColumns: image.TotalPixelMatrixColumns,
      totalRows: image.TotalPixelMatrixRows,
      pixelSpacing: pixelSpacing(image),
      offset: [Number(origin.XOffsetInSlideCoordinateSystem), Number(origin.YOffsetInSlideCoordinateSystem)],
      orientation: list(image.ImageOrientationSlide).map(Number),
    };
  }

  /**
   * The map's view: its size, rotation, resolution and the affine map from viewport pixels to map
   * coordinates (dicom-microscopy-viewer's map coordinates are (column, -(row + 1)) on the base
   * level's total pixel matrix, pyramid.js _computeImagePyramid).
   */
  function viewState() {
    const map = state.viewer.getMap();
    const view = map.getView();
    const o = map.getCoordinateFromPixel([0, 0]);
    const x = map.getCoordinateFromPixel([1, 0]);
    const y = map.getCoordinateFromPixel([0, 1]);
    const rect = document.getElementById('viewer').getBoundingClientRect();
    return {
      size: map.getSize(),
      container: { left: rect.left, top: rect.top, width: rect.width, height: rect.height },
      resolution: view.getResolution(),
      rotation: view.getRotation(),
      // map coordinate = origin + px * dx + py * dy
      pixelToMap: { origin: o, dx: [x[0] - o[0], x[1] - o[1]], dy: [y[0] - o[0], y[1] - o[1]] },
    };
  }

  /**
   * Opens the slide's VOLUME levels and shows the whole slide at `resolution` (map units, i.e.
   * base-level pixels, per screen pixel; by default what fits the whole slide), centred.
   */
  async function openSlide({ studyInstanceUID, seriesInstanceUID, resolution }) {
    state.client = makeClient();
    const metadata = await state.client.retrieveSeriesMetadata({ studyInstanceUID, seriesInstanceUID });
    state.images = metadata.map((m) => new dmv.metadata.VLWholeSlideMicroscopyImage({ metadata: m }));
    const volume = state.images.filter((image) => list(image.ImageType)[2] === 'VOLUME');
    state.viewer = new dmv.viewer.VolumeImageViewer({
      client: state.client,
      metadata: volume,
      controls: [],
      errorInterceptor: intercept,
    });
    state.viewer.render({ container: document.getElementById('viewer') });
    const base = volume.reduce((a, b) => (a.TotalPixelMatrixColumns >= b.TotalPixelMatrixColumns ? a : b));
    const view = state.viewer.getMap().getView();
    const container = document.getElementById('viewer');
    view.setResolution(resolution || Math.max(base.TotalPixelMatrixColumns / container.clientWidth, base.TotalPixelMatrixRows / container.clientHeight));
    view.setCenter([base.TotalPixelMatrixColumns / 2, -(base.TotalPixelMatrixRows / 2) - 1]);
    await rendered();
    text('slide-info', `${volume.length} levels, ${base.TotalPixelMatrixColumns} x ${base.TotalPixelMatrixRows} at ${(pixelSpacing(base)[1] * 1000).toFixed(2)} µm; series ${seriesInstanceUID}`);
    return { levels: volume.map(describeImage), frameOfReferenceUID: base.FrameOfReferenceUID, view: viewState() };
  }

  /** Adds the segments of a SEG series; returns what the viewer lists. */
  async function addSegmentation({ studyInstanceUID, seriesInstanceUID }) {
    const metadata = await state.client.retrieveSeriesMetadata({ studyInstanceUID, seriesInstanceUID });
    const instances = metadata.map((m) => new dmv.metadata.Segmentation({ metadata: m }));
    state.viewer.addSegments(instances);
    state.segments = state.viewer.getAllSegments().map((s) => ({ uid: s.uid, number: s.number, label: s.label, propertyType: s.propertyType && s.propertyType.CodeMeaning }));
    const ol = document.getElementById('segments');
    ol.textContent = '';
    for (const s of state.segments) {
      const li = document.createElement('li');
      li.dataset.segmentUid = s.uid;
      li.innerHTML = '<span class="swatch" style="background:#fde725"></span>';
      li.appendChild(document.createTextNode(`#${s.number} ${s.label}`));
      const detail = document.createElement('div');
      detail.className = 'detail';
      detail.textContent = s.propertyType || '';
      li.appendChild(detail);
      ol.appendChild(li);
    }
    text('seg-info', `${instances[0].SegmentationType} SEG, ${instances[0].NumberOfFrames} frames (${instances[0].DimensionOrganizationType}); series ${seriesInstanceUID}`);
    return state.segments;
  }

  async function showSegments(visible) {
    for (const s of state.segments) {
      if (visible) state.viewer.showSegment(s.uid, { opacity: 0.7 });
      else state.viewer.hideSegment(s.uid);
    }
    await rendered();
    return state.segments.map((s) => state.viewer.isSegmentVisible(s.uid));
  }

  /**
   * The region of a finding in slide coordinates: an SCOORD on a total pixel matrix is mapped
   * with that image's own origin, orientation and spacing (utils.buildTransform, as the viewer
   * maps its bulk annotations' 2D coordinates), an SCOORD3D is already there.
   */
  function regionInSlideCoordinates(region) {
    if (region.kind === 'SCOORD3D') return region.points.map((p) => [p[0], p[1], p[2] || 0]);
    const image = state.images.find((i) => i.SOPInstanceUID === region.image.sopInstanceUID);
    if (!image) throw new Error(`the SCOORD is on image ${region.image.sopInstanceUID}, which is not a level of the slide`);
    if (region.image.frameNumbers.length) throw new Error('an SCOORD on a single frame is not read by this page (the node writes them on the total pixel matrix)');
    const d = describeImage(image);
    const affine = dmv.utils.buildTransform({ offset: d.offset, orientation: d.orientation, spacing: d.pixelSpacing });
    return region.points.map((p) => [...dmv.utils.applyTransform({ coordinate: [p[0], p[1]], affine }), 0]);
  }

  function scoord3d(region, frameOfReferenceUID) {
    const coordinates = regionInSlideCoordinates(region);
    const closed = coordinates.length > 2 && coordinates[0][0] === coordinates[coordinates.length - 1][0] && coordinates[0][1] === coordinates[coordinates.length - 1][1];
    const options = { coordinates, frameOfReferenceUID };
    switch (region.graphicType) {
      case 'POINT':
        return new dmv.scoord3d.Point({ coordinates: coordinates[0], frameOfReferenceUID });
      case 'MULTIPOINT':
        return new dmv.scoord3d.Multipoint(options);
      case 'POLYGON':
        return new dmv.scoord3d.Polygon(options);
      case 'ELLIPSE':
        return new dmv.scoord3d.Ellipse(options);
      default:
        return closed ? new dmv.scoord3d.Polygon(options) : new dmv.scoord3d.Polyline(options);
    }
  }

  const ROI_STYLE = { stroke: { color: [0, 214, 255, 1], width: 2 }, fill: { color: [0, 214, 255, 0.08] } };

  /** The label dicom-microscopy-viewer keeps for a ROI: its Tracking Identifier evaluation. */
  function roiLabel(roi) {
    const item = roi.evaluations.find((e) => e.ConceptNameCodeSequence[0].CodeValue === '112039');
    return item ? item.TextValue : '';
  }

  /** What the viewer holds as regions of interest, read back from it. */
  function readROIs() {
    return state.viewer.getAllROIs().map((roi) => {
      const finding = roi.evaluations.find((e) => e.ConceptNameCodeSequence[0].CodeValue === '121071');
      return {
        uid: roi.uid,
        label: roiLabel(roi),
        finding: finding ? finding.ConceptCodeSequence[0].CodeMeaning : '',
        graphicType: roi.scoord3d.graphicType,
        coordinates: roi.scoord3d.graphicData,
      };
    });
  }

  /**
   * A tag with the label above each region's topmost point on the viewport (the view does not
   * move in the test, so the tags are placed once).
   */
  function labelRegions(rois) {
    const container = document.getElementById('viewer');
    for (const old of container.querySelectorAll('.roi-label')) old.remove();
    const base = describeImage(state.images.reduce((a, b) => (a.TotalPixelMatrixColumns >= b.TotalPixelMatrixColumns ? a : b)));
    const inverse = dmv.utils.buildInverseTransform({ offset: base.offset, orientation: base.orientation, spacing: base.pixelSpacing });
    const map = state.viewer.getMap();
    for (const roi of rois) {
      const points = roi.coordinates.map((c) => {
        const [column, row] = dmv.utils.applyInverseTransform({ coordinate: [c[0], c[1]], affine: inverse });
        return map.getPixelFromCoordinate([column, -(row + 1)]);
      });
      const top = points.reduce((a, b) => (b[1] < a[1] ? b : a));
      const tag = document.createElement('div');
      tag.className = 'roi-label';
      tag.textContent = roi.label;
      tag.style.left = `${Math.min(Math.max(top[0], 60), container.clientWidth - 60)}px`;
      tag.style.top = `${Math.max(top[1], 22)}px`;
      container.appendChild(tag);
    }
  }

  /**
   * Reads the SR series' findings (slide_sr.js) and adds each as a region of interest labelled
   * with the finding's label, with its Finding code as evaluation and its measurements.
   */
  async function addAnnotations({ studyInstanceUID, seriesInstanceUID, frameOfReferenceUID }) {
    const metadata = await state.client.retrieveSeriesMetadata({ studyInstanceUID, seriesInstanceUID });
    const findings = [];
    for (const m of metadata) {
      const sr = new dmv.metadata.Comprehensive3DSR({ metadata: m });
      findings.push(...slideSr.readFindings(sr));
    }
    state.findings = findings;
    const problems = [];
    findings.forEach((f, i) => {
      if (!f.region) {
        problems.push(`finding ${i + 1} (${f.label}) has no image region`);
        return;
      }
      try {
        const roi = new dmv.roi.ROI({
          scoord3d: scoord3d(f.region, frameOfReferenceUID),
          uid: f.trackingUID || undefined,
          properties: {
            label: f.label,
            evaluations: f.items.finding ? [f.items.finding] : [],
            measurements: f.items.measurements,
          },
        });
        state.viewer.addROI(roi, ROI_STYLE);
      } catch (err) {
        problems.push(`finding ${i + 1} (${f.label}): ${err.message}`);
      }
    });
    state.viewer.showROIs();
    await rendered();
    const rois = readROIs();
    labelRegions(rois);
    const ol = document.getElementById('annotations');
    ol.textContent = '';
    for (const r of rois) {
      const li = document.createElement('li');
      li.dataset.roiUid = r.uid;
      li.innerHTML = '<span class="swatch" style="background:#00d6ff"></span>';
      li.appendChild(document.createTextNode(r.label));
      const detail = document.createElement('div');
      detail.className = 'detail';
      // The area as the SR states it: the viewer replaces a region's Area measurement with its
      // own computation from the outline, which it scales to mm² x 1000 (scoord3dUtils.js
      // _getFeatureArea).
      const f = findings.find((x) => x.trackingUID && x.trackingUID === r.uid);
      const area = f && f.measurements.find((m) => m.name && m.name.value === '42798000');
      detail.textContent = [r.finding, area ? `Area ${area.value.toPrecision(3)} ${area.unit}` : ''].filter(Boolean).join(', ');
      li.appendChild(detail);
      ol.appendChild(li);
    }
    text('sr-info', `${findings.length} findings in the SR, ${rois.length} regions in the viewer; series ${seriesInstanceUID}`);
    return { findings: findings.map((f) => ({ label: f.label, trackingUID: f.trackingUID })), rois, problems };
  }

  async function setROIsVisible(visible) {
    if (visible) state.viewer.showROIs();
    else state.viewer.hideROIs();
    await rendered();
  }

  /** Bare: the map's layers only, without the viewer's controls and overlays (slide_page.html). */
  async function setBare(bare) {
    document.body.classList.toggle('bare', bare);
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  }

  /**
   * A PNG (base64) scaled by `factor` with the browser's high-quality smoothing, its channels
   * rounded to multiples of `step`: the copies for docs/images, a fraction of a full screenshot's
   * size.
   */
  async function shrinkPng({ base64, factor, step = 1 }) {
    const blob = await (await fetch(`data:image/png;base64,${base64}`)).blob();
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(bitmap.width * factor);
    canvas.height = Math.round(bitmap.height * factor);
    const context = canvas.getContext('2d');
    context.imageSmoothingQuality = 'high';
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    if (step > 1) {
      // Fewer colour levels (multiples of `step`): the synthetic tissue's pixel noise is what
      // makes these PNGs large, and it is not what the picture is for.
      const image = context.getImageData(0, 0, canvas.width, canvas.height);
      const d = image.data;
      for (let i = 0; i < d.length; i++) if ((i & 3) !== 3) d[i] = Math.min(255, Math.round(d[i] / step) * step);
      context.putImageData(image, 0, 0);
    }
    return canvas.toDataURL('image/png').split(',')[1];
  }

  /** The labels the page's lists show (what a user reads next to the slide). */
  function listedLabels() {
    const rows = (id) => [...document.querySelectorAll(`#${id} li`)].map((li) => li.childNodes[1].textContent);
    return { segments: rows('segments'), annotations: rows('annotations') };
  }

  /**
   * Opened by hand (slide_server.js): ?study=UID&slide=SERIES_UID[&seg=SERIES_UID][&sr=SERIES_UID]
   * shows those series at once.
   */
  async function openFromQuery() {
    const q = new URLSearchParams(window.location.search);
    const studyInstanceUID = q.get('study');
    if (!studyInstanceUID || !q.get('slide')) return;
    const opened = await openSlide({ studyInstanceUID, seriesInstanceUID: q.get('slide') });
    if (q.get('seg')) {
      await addSegmentation({ studyInstanceUID, seriesInstanceUID: q.get('seg') });
      await showSegments(true);
    }
    if (q.get('sr')) await addAnnotations({ studyInstanceUID, seriesInstanceUID: q.get('sr'), frameOfReferenceUID: opened.frameOfReferenceUID });
  }
  window.addEventListener('load', () => {
    openFromQuery().catch((err) => {
      state.errors.push(err.message);
      console.error(err);
    });
  });

  window.slidePage = { openSlide, addSegmentation, showSegments, addAnnotations, setROIsVisible, setBare, readROIs, listedLabels, viewState, shrinkPng, errors: () => state.errors.slice() };
})();
