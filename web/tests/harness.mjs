// The shared harness of the browser tests (browser.mjs and the scripts beside it): the
// environment crates/jumpgate/tests/web_ui.rs passes, one Chromium trusting exactly the
// proxy's verified key, fresh pages that collect problems, TOTP codes, test selection.
//
// The environment (set by web_ui.rs, which starts the cluster and makes the users):
//   JUMPGATE_WEB_URL        https://127.0.0.1:PORT (the proxy)
//   JUMPGATE_CA             the cluster's TLS CA (DATA/admin/ca.pem)
//   JUMPGATE_USER, JUMPGATE_PASSWORD   a user of the cluster
//   JUMPGATE_OTPAUTH        that user's otpauth:// URI (the tests compute its codes)
//   JUMPGATE_NODE           a node the user may reach as JUMPGATE_LOGIN (this host's)
//   JUMPGATE_ARTEFACTS      where screenshots go (default web/test-artefacts, gitignored)
//   JUMPGATE_CHROMIUM       the browser (default /usr/bin/chromium)
//   JUMPGATE_WEB_TESTS      optional: a regular expression; only matching tests run
//   JUMPGATE_CHROMIUM_ARGS  optional: more Chromium flags, one per line (webauthn.mjs maps
//                           host names to the proxy with --host-resolver-rules)
//
// Trust: the harness first connects with Node's TLS client verifying the proxy's
// certificate against the cluster's CA, then tells Chromium to accept exactly that
// certificate's public key (--ignore-certificate-errors-spki-list). Chromium takes no CA
// file on its command line, and ignoring every certificate error would also hide a
// proxy serving the wrong certificate.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate, createHash, createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

export function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set: run this through crates/jumpgate/tests/web_ui.rs (test.sh)`);
  }
  return value;
}

export const base = env('JUMPGATE_WEB_URL');
export const caFile = env('JUMPGATE_CA');
export const user = env('JUMPGATE_USER');
export const password = env('JUMPGATE_PASSWORD');
export const otpauth = process.env.JUMPGATE_OTPAUTH ?? '';
export const nodeName = process.env.JUMPGATE_NODE ?? '';
export const nodeLogin = process.env.JUMPGATE_LOGIN ?? 'root';
export const artefacts = resolve(env('JUMPGATE_ARTEFACTS', join(here, '..', 'test-artefacts')));
export const executablePath = env('JUMPGATE_CHROMIUM', '/usr/bin/chromium');
export const only = process.env.JUMPGATE_WEB_TESTS ? new RegExp(process.env.JUMPGATE_WEB_TESTS) : null;
mkdirSync(artefacts, { recursive: true });

/** The proxy's leaf certificate, verified against the cluster's CA; its SPKI SHA-256, base64. */
export function verifiedSpkiHash() {
  const url = new URL(base);
  return new Promise((resolvePin, reject) => {
    const socket = connect({
      host: url.hostname,
      port: Number(url.port),
      ca: readFileSync(caFile),
      ALPNProtocols: ['http/1.1'],
      // An IP address is checked against the certificate's IP SANs.
      servername: /^[0-9.]+$/.test(url.hostname) ? undefined : url.hostname,
    });
    socket.once('secureConnect', () => {
      const der = socket.getPeerCertificate().raw;
      socket.end();
      const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
      resolvePin(createHash('sha256').update(spki).digest('base64'));
    });
    socket.once('error', (err) =>
      reject(new Error(`the proxy's certificate does not verify against ${caFile}: ${err.message}`)),
    );
  });
}

/** The code of an authenticator app enrolled with `uri` (RFC 6238), now or at `at` (ms). */
export function totp(uri, at = Date.now()) {
  const params = new URL(uri).searchParams;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of (params.get('secret') ?? '').toUpperCase().replace(/=+$/, '')) {
    const value = alphabet.indexOf(c);
    assert.ok(value >= 0, `not base32: ${c}`);
    bits += value.toString(2).padStart(5, '0');
  }
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((byte) => parseInt(byte, 2)));
  const algorithm = (params.get('algorithm') ?? 'SHA1').toLowerCase();
  const digits = Number(params.get('digits') ?? '6');
  const period = Number(params.get('period') ?? '30');
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / period)));
  const mac = createHmac(algorithm, key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(code).padStart(digits, '0');
}

export let browser;

before(async () => {
  const pin = await verifiedSpkiHash();
  browser = await chromium.launch({
    executablePath,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      `--ignore-certificate-errors-spki-list=${pin}`,
      ...(process.env.JUMPGATE_CHROMIUM_ARGS ?? '').split('\n').filter((arg) => arg !== ''),
    ],
  });
});

after(async () => {
  await browser?.close();
});

/**
 * A fresh browser context (no cookies) and page; console errors, page errors and CSP
 * violations are collected, and must be none unless the test says otherwise.
 */
export async function open(t, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  context.setDefaultTimeout(10_000);
  const problems = [];
  // A refusal from the web API is what some tests check; any other failed load is a bug.
  page.on('response', (response) => {
    if (response.status() >= 400 && !new URL(response.url()).pathname.startsWith('/webapi/')) {
      problems.push(`HTTP ${response.status()} for ${response.url()}`);
    }
  });
  page.on('console', (message) => {
    // Failed loads are judged by the response handler above, which knows the URL.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  t.after(async () => {
    const name = t.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    await page.screenshot({ path: join(artefacts, `${name}.png`), fullPage: true }).catch(() => {});
    await context.close();
  });
  return { page, context, problems };
}

export function maybe(name, fn) {
  test(name, { skip: only !== null && !only.test(name) }, fn);
}

/**
 * `jsh login --auth CONNECTOR --browser none` in a fresh JUMPGATE_HOME, as a user runs
 * it; resolves once jsh prints the provider's login URL (`urlPattern`'s first group, or
 * its whole match) as `run.url`. `run.stdout` and `run.stderr` keep growing, `run.exited`
 * resolves with jsh's exit code, and jsh is killed when test `t` ends (it waits minutes
 * for the browser).
 *
 * With `{ openBrowser: true }`, jsh runs without `--browser none` and opens the page as
 * on a desktop, through `xdg-open`: a stand-in on its PATH records the URL it was given,
 * which must be the one jsh printed.
 */
export async function jshSsoLogin(t, jsh, connector, urlPattern, { openBrowser = false } = {}) {
  const home = mkdtempSync(join(tmpdir(), `jsh-${connector}-`));
  const args = ['login', '--proxy', new URL(base).host, '--ca-cert', caFile, '--auth', connector];
  const env = { ...process.env, JUMPGATE_HOME: home };
  const opened = join(home, 'xdg-open-was-given');
  if (openBrowser) {
    const bin = join(home, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > '${opened}'\n`, { mode: 0o755 });
    env.PATH = `${bin}:${process.env.PATH}`;
  } else {
    args.push('--browser', 'none');
  }
  const child = spawn(jsh, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill());
  const run = { home, url: '', stdout: '', stderr: '', exited: new Promise((resolve) => child.on('exit', resolve)) };
  child.stdout.on('data', (chunk) => (run.stdout += chunk));
  run.url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`jsh printed no URL: ${run.stderr}`)), 20_000);
    child.stderr.on('data', (chunk) => {
      run.stderr += chunk;
      const found = run.stderr.match(urlPattern);
      if (found) {
        clearTimeout(timer);
        resolve(found[1] ?? found[0]);
      }
    });
  });
  if (openBrowser) {
    const deadline = Date.now() + 10_000;
    while (!existsSync(opened) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(existsSync(opened), `jsh did not run xdg-open: ${run.stderr}`);
    assert.equal(readFileSync(opened, 'utf8'), run.url);
  }
  return run;
}

/** The web session's view of who is logged in on `page` (null when no one is). */
export function webSession(page) {
  return page.evaluate(async () => {
    const response = await fetch('/webapi/web/session');
    return response.ok ? response.json() : null;
  });
}

/**
 * Opens a page, clicks the login page's button for `connector`, and leaves the rest to
 * `signIn(page)` (the provider's own login form); returns the opened page.
 */
export async function ssoWebLogin(t, connector, signIn) {
  const opened = await open(t);
  await opened.page.goto(`${base}/web/login`);
  await opened.page.getByTestId(`sso-${connector}`).click();
  await signIn(opened.page);
  return opened;
}
