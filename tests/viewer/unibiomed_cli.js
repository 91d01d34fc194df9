// Running the built `unibiomed` program from the viewer tests, and the command-line options the
// tests share.
// SPDX-License-Identifier: GPL-3.0-or-later
'use strict';

const path = require('path');
const { spawnSync } = require('child_process');

/** Runs the program: {status, output} (stdout then stderr); throws only when it cannot start. */
function runUnibiomed(program, args, log) {
  log(`$ unibiomed ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  const run = spawnSync(program, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.error) throw new Error(`${program} could not run: ${run.error.message}`);
  return { status: run.status, output: `${run.stdout || ''}${run.stderr || ''}` };
}

/** Runs the program; returns its output, or throws with it when the program fails. */
function mustRunUnibiomed(program, args, log) {
  const r = runUnibiomed(program, args, log);
  if (r.status !== 0) throw new Error(`unibiomed ${args.join(' ')} failed (exit ${r.status}):\n${r.output}`);
  return r.output;
}

/**
 * Parses argv into `options` (already holding the defaults): --unibiomed, --out and --timeout-ms
 * for every test, `extra[flag](value)` for a test's own value options, --help printing `usage`.
 * --unibiomed is required.
 */
function parseTestArgs(argv, options, usage, extra = {}) {
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === '--help') {
      console.log(usage);
      process.exit(0);
    } else if (flag === '--unibiomed') {
      options.unibiomed = path.resolve(value());
    } else if (flag === '--out') {
      options.out = path.resolve(value());
    } else if (flag === '--timeout-ms') {
      options.timeoutMs = Number(value());
    } else if (Object.prototype.hasOwnProperty.call(extra, flag)) {
      extra[flag](value());
    } else {
      throw new Error(`unknown argument ${flag}`);
    }
  }
  if (!options.unibiomed) throw new Error('--unibiomed PATH (the built unibiomed program) is required');
  return options;
}

/**
 * A test run's log (lines prefixed with the seconds since it started) and its folders under
 * options.out, emptied first: work/ for data, screenshots/ for what is kept.
 */
function startTestRun(options) {
  const fs = require('fs');
  const started = Date.now();
  const log = (m) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${m}`);
  fs.rmSync(options.out, { recursive: true, force: true });
  const work = path.join(options.out, 'work');
  const artifacts = path.join(options.out, 'screenshots');
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(artifacts, { recursive: true });
  return { log, work, artifacts };
}

/** Runs the stop functions a test collected, last first; a failing one is logged, not thrown. */
async function stopAll(cleanup, log) {
  for (const stop of cleanup.reverse()) {
    try {
      await stop();
    } catch (err) {
      log(`cleanup: ${err.message}`);
    }
  }
}

module.exports = { runUnibiomed, mustRunUnibiomed, parseTestArgs, startTestRun, stopAll };
