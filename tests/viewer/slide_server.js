// The same-origin web server of the slide viewer test: the test page (slide_page.html and
// slide_page.js), the SR reader it shares with node (slide_sr.js), dicom-microscopy-viewer's
// UMD bundle with its web worker and WebAssembly decoders, and dicomweb-client's UMD build, all
// from tests/viewer/node_modules; /dicom-web and /wado are proxied to Orthanc as for OHIF
// (viewer_server.js proxyToOrthanc, which keeps the Host header so that the BulkDataURIs
// Orthanc writes into the metadata point back through this origin).
//
// Usable from the command line, to look at a slide by hand:
//   node slide_server.js --orthanc-port 8042 [--port 3001]
// then open http://127.0.0.1:3001/?study=UID&slide=SERIES_UID[&seg=SERIES_UID][&sr=SERIES_UID]
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { proxyToOrthanc, serveFile, listenOnLoopback } = require('./viewer_server.js');

const MODULES = path.join(__dirname, 'node_modules');
const DMV_DIST = path.join(MODULES, 'dicom-microscopy-viewer', 'dist');

/**
 * URL prefixes and the folders they are served from. dicom-microscopy-viewer's bundle starts its
 * decoding worker from `${window.PUBLIC_LIB_URL}dataLoader.worker.min.js` (its
 * webWorkerManager.js); that worker and the WebAssembly decoders it loads next to itself are the
 * package's dist/dynamic-import build, hence the second folder (slide_page.html sets
 * PUBLIC_LIB_URL to /dmv-lib/).
 */
const FOLDERS = [
  ['/dmv/', DMV_DIST],
  ['/dmv-lib/', path.join(DMV_DIST, 'dynamic-import')],
  ['/dwc/', path.join(MODULES, 'dicomweb-client', 'build')],
];
const PAGE_FILES = {
  '/': 'slide_page.html',
  '/slide_page.html': 'slide_page.html',
  '/slide_page.js': 'slide_page.js',
  '/slide_sr.js': 'slide_sr.js',
};

/** The file a request path names, or null. */
function resolveFile(pathname) {
  if (pathname in PAGE_FILES) return path.join(__dirname, PAGE_FILES[pathname]);
  for (const [prefix, dir] of FOLDERS) {
    if (!pathname.startsWith(prefix)) continue;
    const root = path.resolve(dir) + path.sep;
    const file = path.resolve(dir, '.' + pathname.slice(prefix.length - 1));
    if (file.startsWith(root) && fs.existsSync(file) && fs.statSync(file).isFile()) return file;
  }
  return null;
}

/**
 * Starts the server on 127.0.0.1.
 * @param {{orthancPort: number, port?: number, onProxyError?: (msg: string) => void}} options
 * @returns {Promise<{port: number, url: string, close: () => Promise<void>}>}
 */
async function startSlideServer({ orthancPort, port = 0, onProxyError = () => {} }) {
  for (const file of [path.join(DMV_DIST, 'dicomMicroscopyViewer.bundle.min.js'), path.join(MODULES, 'dicomweb-client', 'build', 'dicomweb-client.js')]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run scripts/install-viewer.sh (npm ci in tests/viewer)`);
  }
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    if (/^\/(dicom-web|wado)(\/|$|\?)/.test(pathname)) return proxyToOrthanc(req, res, orthancPort, onProxyError);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain' });
      return res.end('read-only test server\n');
    }
    const file = resolveFile(pathname);
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end(`no ${pathname}\n`);
    }
    return serveFile(res, file, req.method);
  });
  server.keepAliveTimeout = 1000;
  return listenOnLoopback(server, port);
}

module.exports = { startSlideServer };

if (require.main === module) {
  const args = process.argv.slice(2);
  const value = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  if (args.includes('--help')) {
    console.log('usage: node slide_server.js [--orthanc-port 8042] [--port 3001]');
    process.exit(0);
  }
  const orthancPort = Number(value('--orthanc-port', '8042'));
  startSlideServer({ orthancPort, port: Number(value('--port', '3001')), onProxyError: console.error })
    .then((s) => console.log(`slide viewer page at ${s.url}/?study=UID&slide=SERIES_UID (DICOMweb proxied to Orthanc on 127.0.0.1:${orthancPort})`))
    .catch((err) => {
      console.error(`slide_server: ${err.message}`);
      process.exit(1);
    });
}
