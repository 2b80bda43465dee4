// Browser tests of the terminal, recordings and audit pages (docs/web.md) against a real
// `jumpgate start --dev`: real logins with TOTP, real PTY sessions on this host's node
// through the proxy's terminal socket, their real recordings and audit events.
//
// Run by crates/jumpgate/tests/web_ui.rs, which starts the cluster and makes the users:
//   JUMPGATE_USER (alice: `access`, login JUMPGATE_LOGIN) and, for the audit log,
//   JUMPGATE_AUDITOR / JUMPGATE_AUDITOR_OTPAUTH (audrey: `access` and `auditor`).
// Tests run in order and share two logins (a TOTP code is accepted once per 30 s step):
// the terminal test makes the session the recordings and audit tests look for; each of
// those makes one itself when run alone.
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  artefacts,
  base,
  caFile,
  maybe,
  nodeLogin,
  nodeName,
  open,
  otpauth,
  password,
  totp,
  user,
} from './harness.mjs';

const auditor = process.env.JUMPGATE_AUDITOR ?? '';
const auditorOtpauth = process.env.JUMPGATE_AUDITOR_OTPAUTH ?? '';
const terminalPath = `/web/terminal/${encodeURIComponent(nodeName)}/${encodeURIComponent(nodeLogin)}`;

// ---------------------------------------------------------------------------------------
// Helpers

/** Logged-in browser state per user (cookies and local storage), made once. */
const logins = new Map();

async function loginState(t, name, uri) {
  if (!logins.has(name)) {
    assert.ok(uri !== '', `no otpauth URI for ${name}: run through web_ui.rs`);
    const { page, context } = await open(t);
    await page.goto(`${base}/web/login`);
    // A code is accepted once: a second login of the user in the same 30 s step waits
    // for the next one.
    for (let attempt = 0; ; attempt++) {
      await page.getByLabel('User name').fill(name);
      await page.getByLabel('Password').fill(password);
      await page.getByLabel('One-time code').fill(totp(uri));
      await page.getByRole('button', { name: 'Log in' }).click();
      const done = page.getByTestId('user').filter({ hasText: name });
      const refused = page.getByRole('alert');
      await done.or(refused).first().waitFor();
      if (await done.isVisible()) {
        break;
      }
      assert.ok(attempt === 0, `login as ${name} refused: ${await refused.textContent()}`);
      await page.waitForTimeout(30_000 - (Date.now() % 30_000) + 500);
    }
    logins.set(name, await context.storageState());
  }
  return logins.get(name);
}

/** A page logged in as `name`, watching for CSP violations. */
async function openAs(t, name, uri, options = {}) {
  const storageState = await loginState(t, name, uri);
  const opened = await open(t, { storageState, ...options });
  await opened.page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`),
    );
  });
  return opened;
}

async function assertNoCspViolation(page) {
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
}

const shot = (page, name) => page.screenshot({ path: join(artefacts, `${name}.png`), fullPage: true });

/** The shown terminal panel. */
const panel = (page) => page.locator('section[role="tabpanel"]:not([hidden])');

/** The text on the shown terminal's screen, as xterm's DOM renders it, one line per row. */
async function screenText(page) {
  return panel(page)
    .locator('.xterm-rows')
    .evaluate((rows) => [...rows.children].map((row) => row.textContent.replace(/\u00a0/g, ' ')).join('\n'));
}

async function waitForScreen(page, pattern, what = String(pattern)) {
  const deadline = Date.now() + 15_000;
  let text = '';
  while (Date.now() < deadline) {
    text = await screenText(page);
    if (pattern.test(text)) {
      return text;
    }
    await page.waitForTimeout(100);
  }
  assert.fail(`the terminal never showed ${what}; it shows:\n${text}`);
}

async function typeInTerminal(page, line) {
  await panel(page).locator('.xterm-helper-textarea').focus();
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}

async function waitOpen(page) {
  await panel(page).and(page.locator('[data-state="open"]')).waitFor({ timeout: 15_000 });
}

/** A recording of a session of `name` whose output contains `marker`, made if needed. */
const sessions = new Map();

async function sessionWith(t, marker) {
  if (sessions.has(marker)) {
    return sessions.get(marker);
  }
  const { page } = await openAs(t, user, otpauth);
  await page.goto(`${base}${terminalPath}`);
  await waitOpen(page);
  // The output, not the command line, has the marker: `echo jumpgate-$((6*7))`.
  const [word, number] = marker.split('-');
  await typeInTerminal(page, `echo ${word}-$((${number}+0))`);
  await waitForScreen(page, new RegExp(`^${marker}`, 'm'));
  await typeInTerminal(page, 'exit 0');
  await panel(page).getByRole('alert').waitFor();
  return findRecording(page, marker);
}

/** Polls the recordings API (as the page's user) for the one whose output has `marker`. */
async function findRecording(page, marker) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const id = await page.evaluate(async (marker) => {
      const list = await (await fetch('/webapi/web/recordings')).json();
      for (const r of list.recordings ?? []) {
        const cast = await (await fetch(`/webapi/web/recordings/${r.session_id}.cast`)).text();
        if (r.completed && cast.includes(marker)) {
          return r.session_id;
        }
      }
      return null;
    }, marker);
    if (id !== null) {
      sessions.set(marker, id);
      return id;
    }
    await page.waitForTimeout(300);
  }
  assert.fail(`no completed recording with ${marker} within 20 s`);
}

/** The terminal socket's upgrade sent from Node with `origin`: the status and body. */
function upgrade(cookie, origin) {
  const url = new URL(`${base}/webapi/web/terminal?node=${encodeURIComponent(nodeName)}&login=${nodeLogin}`);
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      ca: readFileSync(caFile),
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        Cookie: `__Host-jumpgate_web=${cookie}`,
        Origin: origin,
      },
    });
    req.on('upgrade', (response, socket) => {
      socket.destroy();
      resolve({ status: response.statusCode, body: '' });
    });
    req.on('response', (response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------
// The terminal

maybe('terminal: a real PTY session, output, Unicode, resize, copy and paste, tabs, exit and reconnect', async (t) => {
  const { page, problems } = await openAs(t, user, otpauth, {
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  // xterm.js is not in the first page: it is fetched when the terminal page opens.
  const scripts = [];
  page.on('request', (r) => r.resourceType() === 'script' && scripts.push(new URL(r.url()).pathname));
  await page.goto(`${base}/web/resources`);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.ok(!scripts.some((s) => s.includes('xterm')), `xterm loaded with the first page: ${scripts}`);
  await page.goto(`${base}${terminalPath}`);
  await page.getByRole('heading', { name: `Terminal: ${nodeLogin}@${nodeName}` }).waitFor();
  await waitOpen(page);
  assert.ok(scripts.some((s) => s.includes('xterm')), `no xterm chunk: ${scripts}`);

  // A command and its output (the output line, not the typed command, which has $((...))).
  await typeInTerminal(page, 'echo jumpgate-$((6*7))');
  await waitForScreen(page, /^jumpgate-42\s*$/m, 'jumpgate-42');
  // Unicode both ways: typed, echoed by the shell, rendered.
  await panel(page).locator('.xterm-helper-textarea').focus();
  await page.keyboard.type("printf 'uni:%s\\n' '");
  // Text that is on no keyboard layout arrives as an input method commits it.
  await page.keyboard.insertText('héllo→世界');
  await page.keyboard.type("'");
  await page.keyboard.press('Enter');
  await waitForScreen(page, /uni:h.?é.?l.?l.?o.?→.?世.?界/u, 'the Unicode line');

  // The PTY has the size the page shows, and follows the window.
  const sizeOf = async () => (await panel(page).getAttribute('data-size')).split('x').map(Number);
  const [cols, rows] = await sizeOf();
  await typeInTerminal(page, 'stty size');
  await waitForScreen(page, new RegExp(`^${rows} ${cols}\\s*$`, 'm'), `stty size ${rows} ${cols}`);
  await page.setViewportSize({ width: 900, height: 640 });
  await page.waitForFunction(
    (before) => document.querySelector('section[role="tabpanel"]:not([hidden])')?.dataset.size !== before,
    `${cols}x${rows}`,
  );
  const [cols2, rows2] = await sizeOf();
  assert.ok(cols2 < cols && rows2 < rows, `${cols}x${rows} -> ${cols2}x${rows2}`);
  await typeInTerminal(page, 'clear; stty size');
  await waitForScreen(page, new RegExp(`^${rows2} ${cols2}\\s*$`, 'm'), `stty size ${rows2} ${cols2}`);
  await shot(page, 'terminal');

  // Paste: the clipboard into the shell with Ctrl+Shift+V (the browser's paste event).
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((2+3))'));
  await panel(page).locator('.xterm-helper-textarea').focus();
  await page.keyboard.press('Control+Shift+V');
  await page.keyboard.press('Enter');
  await waitForScreen(page, /^pasted-5\s*$/m, 'pasted-5');
  // Copy: a double-clicked word of the output, with Ctrl+Shift+C.
  await page.evaluate(() => navigator.clipboard.writeText(''));
  const box = await panel(page)
    .locator('.xterm-rows > div')
    .filter({ hasText: /^pasted-5\s*$/ })
    .last()
    .boundingBox();
  // On the word's first letters (xterm's screen layer takes the mouse, not the row).
  await page.mouse.dblclick(box.x + 12, box.y + box.height / 2);
  await page.keyboard.press('Control+Shift+C');
  await page.waitForFunction(async () => (await navigator.clipboard.readText()) === 'pasted-5', null, {
    timeout: 5000,
  });

  // A second terminal in a tab ("+"), to the same node; the first keeps its session.
  await page.getByRole('button', { name: 'Open another terminal' }).click();
  assert.equal(await page.getByLabel('Node', { exact: true }).inputValue(), nodeName);
  assert.equal(await page.getByLabel('Login', { exact: true }).inputValue(), nodeLogin);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('tab').nth(1).waitFor();
  assert.equal(await page.getByRole('tab').count(), 2);
  await waitOpen(page);
  await typeInTerminal(page, 'echo second-$((1+1))');
  await waitForScreen(page, /^second-2\s*$/m, 'second-2');
  // Back to the first by keyboard (arrow keys in the tab list): its output is still there.
  await page.getByRole('tab', { selected: true }).focus();
  await page.keyboard.press('ArrowLeft');
  await page.getByRole('tab').first().and(page.locator('[aria-selected="true"]')).waitFor();
  await waitForScreen(page, /^pasted-5\s*$/m, 'the first tab\'s output');
  await shot(page, 'terminal-tabs');

  // The session ends: the exit status in the page, and Reconnect opens a new one.
  await typeInTerminal(page, 'exit 3');
  const alert = panel(page).getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.textContent(), /The session ended: the shell exited with status 3/);
  await shot(page, 'terminal-ended');
  await alert.getByRole('button', { name: 'Reconnect' }).click();
  await waitOpen(page);
  assert.equal(await panel(page).getByRole('alert').count(), 0);
  await typeInTerminal(page, 'echo again-$((40+2))');
  await waitForScreen(page, /^again-42\s*$/m, 'again-42');
  await typeInTerminal(page, 'exit');
  await panel(page).getByRole('alert').waitFor();

  // Leave the terminal by keyboard (Ctrl+Shift+L) for its tab, go to the second, close it
  // with Delete: one tab left, focused.
  await panel(page).locator('.xterm-helper-textarea').focus();
  await page.keyboard.press('Control+Shift+L');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'tab');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Delete');
  await page.getByRole('tab').nth(1).waitFor({ state: 'detached' });
  assert.equal(await page.getByRole('tab').count(), 1);
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-selected') === 'true');
  await assertNoCspViolation(page);
  assert.deepEqual(problems, []);
  await findRecording(page, 'jumpgate-42');
});

maybe('terminal: a login or node the roles refuse shows the proxy\'s reason', async (t) => {
  const { page, problems } = await openAs(t, user, otpauth);
  await page.goto(`${base}/web/terminal/${encodeURIComponent(nodeName)}/nobody-allowed`);
  const alert = panel(page).getByRole('alert');
  await alert.waitFor();
  assert.match(
    await alert.textContent(),
    /Refused: access denied: no role allows login `nobody-allowed`/,
  );
  await shot(page, 'terminal-refused');
  // A node the user's roles do not let them see is told as absent.
  await page.goto(`${base}/web/terminal/no-such-node/${nodeLogin}`);
  await panel(page).getByRole('alert').waitFor();
  assert.match(await panel(page).getByRole('alert').textContent(), /Refused: no node named "no-such-node"/);
  // Reconnect asks again (a new socket), and is refused again.
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  await panel(page).getByRole('button', { name: 'Reconnect' }).click();
  await panel(page).getByRole('alert').filter({ hasText: 'Refused: no node named' }).waitFor();
  assert.equal(sockets.length, 1, `sockets: ${sockets}`);
  assert.deepEqual(problems, []);
});

maybe('terminal: a WebSocket from another origin is refused', async (t) => {
  const state = await loginState(t, user, otpauth);
  const cookie = state.cookies.find((c) => c.name === '__Host-jumpgate_web')?.value;
  assert.ok(cookie, 'the login set the session cookie');
  // With the user's own cookie, from Node: another site's Origin is refused, ours is not.
  // (A page of another site in the browser would prove less: the cookie is SameSite=Strict,
  // and Chromium's local-network checks block a public page's socket to loopback anyway.)
  const evil = await upgrade(cookie, 'https://evil.example');
  assert.equal(evil.status, 403, evil.body);
  assert.match(evil.body, /another site/);
  const ours = await upgrade(cookie, new URL(base).origin);
  assert.equal(ours.status, 101, ours.body);
});

// ---------------------------------------------------------------------------------------
// Recordings

maybe('recordings: the list, filters, playing with speed and seeking, download', async (t) => {
  const id = await sessionWith(t, 'jumpgate-42');
  const { page, problems } = await openAs(t, user, otpauth);
  const scripts = [];
  page.on('request', (r) => r.resourceType() === 'script' && scripts.push(new URL(r.url()).pathname));
  await page.goto(`${base}/web/resources`);
  await page.getByRole('link', { name: 'Recordings' }).click();
  await page.getByRole('heading', { name: 'Recordings' }).waitFor();
  const row = page.locator(`tr[data-session="${id}"]`);
  await row.waitFor();
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[1], user);
  assert.equal(cells[2], nodeName);
  assert.equal(cells[3], nodeLogin);
  assert.match(cells[0], /\d/, `a start time: ${cells}`);
  assert.match(cells[4], /^\d+ (s|min)/, `a duration: ${cells}`);
  // Filters: by user, and one that matches nothing.
  const total = await page.locator('table.recordings tbody tr').count();
  // Newest session first.
  const starts = await page
    .locator('table.recordings tbody tr')
    .evaluateAll((rows) => rows.map((row) => Number(row.dataset.start)));
  assert.ok(starts.every((start) => start > 0), `starts: ${starts}`);
  assert.deepEqual([...starts].sort((a, b) => b - a), starts, `starts: ${starts}`);
  const count = page.getByTestId('recording-count');
  await count.filter({ hasText: `${total} of ${total} recordings` }).waitFor();
  await page.getByLabel('User', { exact: true }).fill(user);
  await count.filter({ hasText: `${total} of ${total} recordings` }).waitFor();
  await page.getByLabel('Session', { exact: true }).fill(id);
  await count.filter({ hasText: `1 of ${total} recordings` }).waitFor();
  assert.equal(await page.locator('table.recordings tbody tr').count(), 1);
  await page.getByLabel('Node', { exact: true }).fill('no-such-node');
  await page.getByTestId('recording-count').filter({ hasText: `0 of ${total} recordings` }).waitFor();
  await page.getByLabel('Node', { exact: true }).fill('');
  await shot(page, 'recordings');
  assert.ok(!scripts.some((s) => s.includes('player')), `the player loaded with the list: ${scripts}`);

  // Download as asciicast.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row.getByRole('link', { name: /\.cast/ }).click(),
  ]);
  assert.equal(download.suggestedFilename(), `${id}.cast`);
  const cast = readFileSync(await download.path(), 'utf8');
  assert.equal(JSON.parse(cast.split('\n')[0]).version, 2);
  assert.match(cast, /jumpgate-42/);

  // Play it.
  await row.getByRole('link', { name: `Play ${id}`, exact: true }).click();
  await page.getByRole('heading', { name: `Recording ${id}` }).waitFor();
  assert.equal(new URL(page.url()).pathname, `/web/recordings/${id}`);
  const screen = page.locator('.player .ap-term');
  await screen.waitFor();
  await page.locator('.player').getByRole('button', { name: 'Play' }).click();
  await page.waitForFunction(() => /jumpgate-42/.test(document.querySelector('.player .ap-term')?.textContent ?? ''), null, {
    timeout: 20_000,
  });
  await shot(page, 'recording-player');
  // Seeking: back to the start, the output is not on the screen yet; forward again.
  // (A short recording may have ended already: then there is nothing to pause.)
  const pause = page.locator('.player').getByRole('button', { name: 'Pause' });
  if (await pause.isVisible()) {
    await pause.click();
  }
  for (let i = 0; i < 20; i++) {
    await page.getByRole('button', { name: 'Back 5 s' }).click();
  }
  await page.getByTestId('player-time').filter({ hasText: /^0 s/ }).waitFor();
  await page.waitForFunction(() => !/jumpgate-42/.test(document.querySelector('.player .ap-term')?.textContent ?? ''));
  await page.getByRole('button', { name: 'Forward 5 s' }).click();
  await page.getByTestId('player-time').filter({ hasText: /^[1-9]/ }).waitFor();
  // Speed: the player is made again at the new speed, where it was.
  const before = await page.getByTestId('player-time').textContent();
  await page.getByLabel('Speed', { exact: true }).selectOption('4');
  await page.locator('.player[data-speed="4"] .ap-term').waitFor();
  await page.waitForTimeout(500);
  assert.equal((await page.getByTestId('player-time').textContent()).split(' of ')[0], before.split(' of ')[0]);
  assert.ok(scripts.some((s) => s.includes('player')), `no player chunk: ${scripts}`);
  await assertNoCspViolation(page);
  assert.deepEqual(problems, []);
});

maybe('recordings: a recording the API refuses shows its message', async (t) => {
  const { page, problems } = await openAs(t, user, otpauth);
  // A session id that names no recording (well formed): the API's own message.
  const id = '00000000-0000-4000-8000-000000000000';
  await page.goto(`${base}/web/recordings`);
  await page.getByRole('heading', { name: 'Recordings' }).waitFor();
  const answer = await page.evaluate(async (id) => {
    const response = await fetch(`/webapi/web/recordings/${id}.cast`);
    return { status: response.status, body: await response.json() };
  }, id);
  assert.ok(answer.status >= 400, JSON.stringify(answer));
  await page.goto(`${base}/web/recordings/${id}`);
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.equal(await alert.textContent(), answer.body.error.message);
  assert.deepEqual(problems, []);
});

// ---------------------------------------------------------------------------------------
// The audit log

maybe('audit: filters, paging with the cursor, event detail, the link to the recording', async (t) => {
  assert.ok(auditor !== '', 'JUMPGATE_AUDITOR is needed');
  const id = await sessionWith(t, 'jumpgate-42');
  const { page, problems } = await openAs(t, auditor, auditorOtpauth);
  await page.goto(`${base}/web/resources`);
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  await page.locator('table.events tbody tr').first().waitFor();
  await shot(page, 'audit');

  // Paging with the server's cursor: 10 a page, the next page differs, previous returns
  // (up to now: events that come later would shift the pages).
  const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60_000);
  await page.getByLabel('To', { exact: true }).fill(now.toISOString().slice(0, 19));
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByLabel('Events per page', { exact: true }).selectOption('10');
  await page.getByTestId('event-count').filter({ hasText: 'Page 1: 10 events' }).waitFor();
  const uids = async () => page.locator('table.events tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.uid));
  const first = await uids();
  await page.getByRole('button', { name: 'Next page' }).click();
  await page.getByTestId('event-count').filter({ hasText: 'Page 2:' }).waitFor();
  const second = await uids();
  assert.ok(second.every((row) => !first.includes(row)), 'page 2 repeats page 1');
  await page.getByRole('button', { name: 'Previous page' }).click();
  await page.getByTestId('event-count').filter({ hasText: 'Page 1:' }).waitFor();
  assert.deepEqual(await uids(), first);

  // A time range before the cluster: nothing.
  await page.getByLabel('From', { exact: true }).fill('2020-01-01T00:00:00');
  await page.getByLabel('To', { exact: true }).fill('2020-01-02T00:00:00');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByTestId('event-count').filter({ hasText: 'No events match.' }).waitFor();
  await page.getByRole('button', { name: 'Clear' }).click();

  // The session's events, by type, user and session.
  await page.getByLabel('Event type', { exact: true }).selectOption('session.start');
  await page.getByLabel('User', { exact: true }).fill(user);
  await page.getByLabel('Session', { exact: true }).fill(id);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByTestId('event-count').filter({ hasText: 'Page 1: 1 event,' }).waitFor();
  const row = page.locator(`table.events tbody tr[data-event="session.start"][data-session="${id}"]`);
  assert.equal(await row.count(), 1);
  // Its detail: the event's JSON, as text.
  await row.getByText('JSON').click();
  const json = JSON.parse(await row.locator('pre.json').textContent());
  assert.equal(json.event, 'session.start');
  assert.equal(json.sid, id);
  assert.equal(json.user, user);
  await shot(page, 'audit-session');
  // The link to its recording, played.
  await row.getByRole('link', { name: `Recording of session ${id}`, exact: true }).click();
  await page.getByRole('heading', { name: `Recording ${id}` }).waitFor();
  await page.locator('.player .ap-term').waitFor();
  await page.locator('.player').getByRole('button', { name: 'Play' }).click();
  await page.waitForFunction(() => /jumpgate-42/.test(document.querySelector('.player .ap-term')?.textContent ?? ''), null, {
    timeout: 20_000,
  });
  // An auditor lists every user's recordings.
  await page.getByRole('link', { name: 'All recordings' }).click();
  await page.locator(`tr[data-session="${id}"]`).waitFor();
  await assertNoCspViolation(page);
  assert.deepEqual(problems, []);
});

maybe('audit: a user without the event rule sees the API\'s refusal', async (t) => {
  const { page, problems } = await openAs(t, user, otpauth);
  await page.goto(`${base}/web/resources`);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  const answer = await page.evaluate(async () => {
    const response = await fetch('/webapi/web/events?limit=1');
    return { status: response.status, body: await response.json() };
  });
  assert.equal(answer.status, 403, JSON.stringify(answer));
  await page.goto(`${base}/web/audit`);
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.equal(await alert.locator('p').textContent(), answer.body.error.message);
  await shot(page, 'audit-refused');
  assert.deepEqual(problems, []);
});

maybe('sessions: a live terminal is listed to its user and to an auditor, and leaves when it ends', async (t) => {
  assert.ok(auditor !== '', 'JUMPGATE_AUDITOR is needed');
  // alice's terminal, left open.
  const { page: hers, context: herContext, problems: herProblems } = await openAs(t, user, otpauth);
  await hers.goto(`${base}${terminalPath}`);
  await waitOpen(hers);
  await typeInTerminal(hers, 'echo live-$((40+2))');
  await waitForScreen(hers, /^live-42/m);

  const listed = async (page, shouldList) => {
    // The node's session.start reaches auth in the background: a few refreshes at most.
    const deadline = Date.now() + 15_000;
    for (;;) {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.getByTestId('session-count').filter({ hasNotText: 'Loading' }).waitFor();
      const rows = page.locator('table.sessions tbody tr').filter({ hasText: `${nodeLogin}@${nodeName}` }).filter({ hasText: user });
      const count = await rows.count();
      if ((count > 0) === shouldList) {
        return rows;
      }
      assert.ok(Date.now() < deadline, shouldList ? 'the live session is not listed' : 'the ended session is still listed');
      await page.waitForTimeout(500);
    }
  };

  // Her own list (another tab: leaving the terminal's page would end the session) has it,
  // as a shell, with a link to its recording.
  const list = await herContext.newPage();
  await list.goto(`${base}/web/resources`);
  await list.getByRole('link', { name: 'Sessions', exact: true }).click();
  await list.getByRole('heading', { name: 'Sessions in progress' }).waitFor();
  const mine = await listed(list, true);
  assert.match(await mine.first().textContent(), /shell/);
  await shot(list, 'sessions');

  // The auditor sees it too; after `exit`, it leaves the list.
  const { page, problems } = await openAs(t, auditor, auditorOtpauth);
  await page.goto(`${base}/web/sessions`);
  await page.getByRole('heading', { name: 'Sessions in progress' }).waitFor();
  await listed(page, true);
  await typeInTerminal(hers, 'exit 0');
  await panel(hers).getByRole('alert').waitFor();
  await listed(page, false);
  assert.deepEqual(problems, []);
  assert.deepEqual(herProblems, []);
});

maybe('terminal, recordings and audit log are readable at 200% zoom (no sideways scrolling)', async (t) => {
  assert.ok(auditor !== '', 'JUMPGATE_AUDITOR is needed');
  // 200% zoom of a 1280x800 window: a 640x400 CSS-pixel viewport at twice the density.
  const { page, problems } = await openAs(t, auditor, auditorOtpauth, {
    viewport: { width: 640, height: 400 },
    deviceScaleFactor: 2,
  });
  const noSideways = () =>
    page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
  await page.goto(`${base}/web/recordings`);
  await page.locator('table.recordings tbody tr').first().waitFor();
  assert.ok(await noSideways(), 'the recordings page scrolls sideways at 200%');
  await shot(page, 'recordings-200-percent');
  await page.goto(`${base}/web/audit`);
  await page.locator('table.events tbody tr').first().waitFor();
  await page.locator('table.events tbody tr').first().getByText('JSON').click();
  assert.ok(await noSideways(), 'the audit log scrolls sideways at 200%');
  await shot(page, 'audit-200-percent');
  await page.goto(`${base}${terminalPath}`);
  await waitOpen(page);
  assert.ok(await noSideways(), 'the terminal page scrolls sideways at 200%');
  await shot(page, 'terminal-200-percent');
  await assertNoCspViolation(page);
  assert.deepEqual(problems, []);
});

// Last: it ends alice's web session.
maybe('terminal: an expired web session brings the login page with "Your session expired"', async (t) => {
  const { page, problems } = await openAs(t, user, otpauth);
  await page.goto(`${base}${terminalPath}`);
  await waitOpen(page);
  await typeInTerminal(page, 'exit 0');
  await panel(page).getByRole('alert').waitFor();
  // The session ends elsewhere (another window with the same cookie logs out).
  const other = await open(t, { storageState: logins.get(user) });
  await other.page.goto(`${base}/web/resources`);
  await other.page.getByRole('button', { name: 'Log out', exact: true }).click();
  await other.page.getByText('You are logged out.').waitFor();
  logins.delete(user);
  // Reconnect: the proxy refuses the socket without a session; the page finds out why.
  await panel(page).getByRole('button', { name: 'Reconnect' }).click();
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  await page.getByText('Your session expired').waitFor();
  await shot(page, 'terminal-expired');
  // The refused upgrade (401) is the one failed load here (the browser logs it).
  assert.deepEqual(
    problems.filter((p) => !/WebSocket connection to .* failed/.test(p)),
    [],
  );
});
