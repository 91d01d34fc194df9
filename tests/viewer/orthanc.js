// A throw-away Debian Orthanc with its DICOMweb plugin on loopback ports, for the viewer test
// (docs/ORTHANC.md, "Testing against a real Orthanc").
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');

const ORTHANC = '/usr/sbin/Orthanc';
const DICOMWEB_PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One HTTP request to 127.0.0.1; resolves {status, body: Buffer}. */
function request(port, method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts Orthanc with a fresh storage in workDir; resolves once /system answers.
 * @returns {Promise<{httpPort: number, upload: (file: string) => Promise<object>, get: Function, stop: () => Promise<void>}>}
 */
async function startOrthanc(workDir, { startTimeoutMs = 20000 } = {}) {
  for (const file of [ORTHANC, DICOMWEB_PLUGIN]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run scripts/install-deps.sh`);
  }
  fs.mkdirSync(path.join(workDir, 'storage'), { recursive: true });
  const httpPort = await freePort();
  const dicomPort = await freePort();
  const config = {
    Name: 'UniBiomedViewerTest',
    StorageDirectory: path.join(workDir, 'storage'),
    IndexDirectory: path.join(workDir, 'storage'),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: 'ORTHANC',
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    SaveJobs: false,
    StableAge: 1,
    HttpTimeout: 60,
    Plugins: [DICOMWEB_PLUGIN],
    // No "Host" here: the viewer server forwards the browser's Host header, from which the
    // plugin builds BulkDataURIs that point back through the viewer's origin.
    DicomWeb: { Enable: true, Root: '/dicom-web/', EnableWado: true, WadoRoot: '/wado', Ssl: false },
  };
  const configFile = path.join(workDir, 'orthanc.json');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
  const log = fs.openSync(path.join(workDir, 'orthanc.log'), 'w');
  const child = spawn(ORTHANC, [configFile], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });

  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (exited) {
      throw new Error(`Orthanc exited at start (${JSON.stringify(exited)}); see ${path.join(workDir, 'orthanc.log')}`);
    }
    try {
      const r = await request(httpPort, 'GET', '/system');
      if (r.status === 200) break;
    } catch (_) {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`Orthanc did not answer on 127.0.0.1:${httpPort} within ${startTimeoutMs} ms`);
    }
    await sleep(50);
  }

  return {
    httpPort,
    get: (urlPath) => request(httpPort, 'GET', urlPath),
    /** Stores one DICOM file over REST (POST /instances); rejects with the file name on failure. */
    upload: async (file) => {
      const r = await request(httpPort, 'POST', '/instances', fs.readFileSync(file), {
        'content-type': 'application/dicom',
      });
      if (r.status !== 200) {
        throw new Error(`Orthanc refused ${file}: HTTP ${r.status} ${r.body.toString().slice(0, 500)}`);
      }
      return JSON.parse(r.body.toString());
    },
    stop: async () => {
      if (exited) return;
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await done;
      clearTimeout(timer);
    },
  };
}

module.exports = { startOrthanc, freePort, request };
