// The same-origin web server for the OHIF viewer: serves OHIF's built dist/ (with index.html
// for every unknown path, as OHIF's own deployments do: dist/_redirects "/* /index.html 200"),
// an app-config.js that points OHIF at /dicom-web, and proxies /dicom-web and /wado to Orthanc.
// Same origin, because OHIF's DICOMweb client and cornerstone's workers fetch from the page's
// origin. The proxy keeps the browser's Host header: Orthanc's DICOMweb plugin builds the
// BulkDataURI of every instance from it, so the browser fetches bulk data back through here.
//
// Usable as a module (startViewerServer) and from the command line, to look at a study by hand:
//   node viewer_server.js --ohif DIR --orthanc-port 8042 [--port 3000]
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.ttf': 'font/ttf',
  '.xml': 'application/xml',
  '.txt': 'text/plain; charset=utf-8',
};

// OHIF 3.13 configuration with one DICOMweb data source, the settings of
// docs/DICOM-OUTPUT.md ("OHIF in a test"): WADO-RS rendering, bulk data through
// the BulkDataURIs Orthanc returns, and no quotes around the multipart type parameter (Orthanc
// 1.10 rejects quoted ones).
function appConfig() {
  const config = {
    routerBasename: '/',
    extensions: [],
    modes: [],
    showStudyList: true,
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: false,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: 'never' },
    showErrorDetails: 'always',
    defaultDataSourceName: 'orthanc',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'orthanc',
        configuration: {
          friendlyName: 'Orthanc (UniBiomed node)',
          name: 'orthanc',
          qidoRoot: '/dicom-web',
          wadoRoot: '/dicom-web',
          wadoUriRoot: '/wado',
          qidoSupportsIncludeField: false,
          supportsReject: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          dicomUploadEnabled: false,
          singlepart: 'pdf',
          bulkDataURI: { enabled: true },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
  return `window.config = ${JSON.stringify(config, null, 2)};\n`;
}

function proxyToOrthanc(req, res, orthancPort, onProxyError) {
  const upstream = http.request(
    {
      host: '127.0.0.1',
      port: orthancPort,
      method: req.method,
      path: req.url,
      headers: req.headers, // Host included, unchanged (see the file comment)
    },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', (err) => {
    onProxyError(`proxy ${req.method} ${req.url} -> Orthanc 127.0.0.1:${orthancPort}: ${err.message}`);
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`Orthanc unreachable: ${err.message}\n`);
  });
  req.pipe(upstream);
}

function serveFile(res, file, method) {
  const type = CONTENT_TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream';
  const stat = fs.statSync(file);
  res.writeHead(200, { 'content-type': type, 'content-length': stat.size, 'cache-control': 'no-cache' });
  if (method === 'HEAD') return res.end();
  fs.createReadStream(file).pipe(res);
}

/**
 * Starts the server on 127.0.0.1.
 * @param {{ohifDir: string, orthancPort: number, port?: number, onProxyError?: (msg: string) => void}} options
 *   ohifDir: the unpacked @ohif/app package (holds dist/) or its dist/ folder itself.
 * @returns {Promise<{port: number, url: string, close: () => Promise<void>}>}
 */
async function startViewerServer({ ohifDir, orthancPort, port = 0, onProxyError = () => {} }) {
  const dist = fs.existsSync(path.join(ohifDir, 'dist', 'index.html')) ? path.join(ohifDir, 'dist') : ohifDir;
  const index = path.join(dist, 'index.html');
  if (!fs.existsSync(index)) {
    throw new Error(`no OHIF build in ${ohifDir} (expected dist/index.html); run scripts/install-viewer.sh`);
  }
  const configText = appConfig();
  const root = path.resolve(dist) + path.sep;

  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    if (/^\/(dicom-web|wado)(\/|$|\?)/.test(pathname)) {
      return proxyToOrthanc(req, res, orthancPort, onProxyError);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain' });
      return res.end('read-only viewer server\n');
    }
    if (pathname === '/app-config.js') {
      res.writeHead(200, { 'content-type': CONTENT_TYPES['.js'], 'cache-control': 'no-cache' });
      return res.end(req.method === 'HEAD' ? undefined : configText);
    }
    const file = path.resolve(dist, '.' + pathname);
    if (file.startsWith(root) && fs.existsSync(file) && fs.statSync(file).isFile()) {
      return serveFile(res, file, req.method);
    }
    // Single-page app: every other path (/viewer, /segmentation, ...) is the app itself.
    return serveFile(res, index, req.method);
  });
  // Keep-alive sockets would hold close() open until their timeout.
  server.keepAliveTimeout = 1000;

  return listenOnLoopback(server, port);
}

/** Starts `server` on 127.0.0.1:`port` (0: any free port): {port, url, close()}. */
async function listenOnLoopback(server, port) {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = server.address().port;
  return {
    port: actualPort,
    url: `http://127.0.0.1:${actualPort}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// proxyToOrthanc, serveFile, listenOnLoopback and CONTENT_TYPES also serve the slide viewer test
// (slide_server.js).
module.exports = { startViewerServer, appConfig, proxyToOrthanc, serveFile, listenOnLoopback, CONTENT_TYPES };

if (require.main === module) {
  const args = process.argv.slice(2);
  const value = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  const ohifDir = value('--ohif');
  const orthancPort = Number(value('--orthanc-port', '8042'));
  if (!ohifDir || args.includes('--help')) {
    console.log('usage: node viewer_server.js --ohif DIR [--orthanc-port 8042] [--port 3000]');
    process.exit(ohifDir ? 0 : 2);
  }
  startViewerServer({ ohifDir, orthancPort, port: Number(value('--port', '3000')), onProxyError: console.error })
    .then((s) => console.log(`OHIF at ${s.url}/ (DICOMweb proxied to Orthanc on 127.0.0.1:${orthancPort})`))
    .catch((err) => {
      console.error(`viewer_server: ${err.message}`);
      process.exit(1);
    });
}
