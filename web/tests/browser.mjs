// Browser tests of the web UI: Playwright (playwright-core, no bundled browser) driving
// Debian's chromium against a real `jumpgate start --dev`: the login and resources pages,
// the security headers, and the pages against the web API's contract.
//
// Run by crates/jumpgate/tests/web_ui.rs (so by test.sh), which starts the cluster, makes
// the users and passes what the harness (harness.mjs: environment, browser, trust) needs.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  artefacts,
  base,
  nodeLogin,
  nodeName,
  open,
  maybe,
  otpauth,
  password,
  totp,
  user,
} from './harness.mjs';

maybe('the app loads at /web with the security headers and runs under its CSP', async (t) => {
  const { page, problems } = await open(t);
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
    // When the app shows a page (its heading, after the session check), on the page's
    // own clock (ms since navigation start).
    new MutationObserver((_, observer) => {
      if (document.querySelector('main h1') !== null) {
        window.__renderedAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { childList: true, subtree: true });
  });
  const response = await page.goto(`${base}/web`);
  assert.equal(response.status(), 200);
  const headers = response.headers();
  const csp = headers['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  // No inline script, no eval ('unsafe-inline' only for styles: the terminal's; docs/web.md).
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/);
  assert.doesNotMatch(csp, /'unsafe-eval'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  // The dev cluster serves its own CA's certificate: no HSTS.
  assert.equal(headers['strict-transport-security'], undefined);
  // The bundle ran (the CSP let it): the app rendered something into #app.
  await page.waitForFunction(() => (document.getElementById('app')?.childElementCount ?? 0) > 0);
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
  // Interactive within 1 s of the navigation's start (issue 17), on loopback: the best of
  // three loads (the suite runs tests in parallel on two cores), by the page's own clock.
  await page.waitForFunction(() => window.__renderedAt !== undefined);
  const times = [await page.evaluate(() => window.__renderedAt)];
  for (let i = 0; i < 2; i++) {
    await page.reload();
    await page.waitForFunction(() => window.__renderedAt !== undefined);
    times.push(await page.evaluate(() => window.__renderedAt));
  }
  const best = Math.min(...times);
  t.diagnostic(`app rendered ${times.map(Math.round).join(', ')} ms after navigation start`);
  assert.ok(best < 1000, `the app took ${times.join(', ')} ms to render`);
  // `/` redirects to the app.
  const root = await page.goto(`${base}/`);
  assert.equal(new URL(root.url()).pathname, '/web');
  assert.deepEqual(problems, []);
});

// Needs GET /webapi/web/session to answer 401 without a session (the web sessions' endpoints).
maybe('the login form is keyboard-navigable and labelled', async (t) => {
  const { page, problems } = await open(t);
  await page.goto(`${base}/web`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/web/login');
  // Every input has a label.
  for (const name of ['User name', 'Password', 'One-time code']) {
    assert.equal(await page.getByLabel(name, { exact: true }).count(), 1, name);
  }
  // The user field has focus; Tab walks user → password → code → the button.
  await page.getByLabel('User name').focus();
  const order = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement?.getAttribute('name') ?? document.activeElement?.textContent));
  }
  assert.deepEqual(order, ['password', 'otp', 'Log in']);
  assert.deepEqual(problems, []);
});

// Needs POST /webapi/web/login (the web sessions' endpoints).
maybe("a wrong password shows the server's message", async (t) => {
  const { page } = await open(t);
  await page.goto(`${base}/web/login`);
  await page.getByLabel('User name').waitFor();
  // All by keyboard: type, Tab, type, Enter.
  await page.getByLabel('User name').focus();
  await page.keyboard.type(user);
  await page.keyboard.press('Tab');
  await page.keyboard.type(`${password}-wrong`);
  await page.keyboard.press('Tab');
  await page.keyboard.type('000000');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/webapi/web/login') && r.request().method() === 'POST'),
    page.keyboard.press('Enter'),
  ]);
  assert.equal(response.status(), 401, `login answered ${response.status()}: ${await response.text()}`);
  const body = await response.json();
  const shown = page.getByRole('alert');
  await shown.waitFor();
  assert.equal((await shown.textContent())?.trim(), body.error.message);
  assert.ok(body.error.message.length > 0);
  // Still on the login page, the password field emptied, no cookie set.
  assert.equal(new URL(page.url()).pathname, '/web/login');
  assert.equal(await page.getByLabel('Password').inputValue(), '');
});

// Needs the web sessions' endpoints: login, session, nodes, logout.
maybe('login with password and one-time code, the real node list, the cookie, logout', async (t) => {
  assert.ok(otpauth !== '' && nodeName !== '', 'JUMPGATE_OTPAUTH and JUMPGATE_NODE are needed');
  const { page, context, problems } = await open(t);
  await page.goto(`${base}/web/resources`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('One-time code').fill(totp(otpauth));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  // Back where the user was going.
  assert.equal(new URL(page.url()).pathname, '/web/resources');
  assert.equal(await page.getByTestId('user').textContent(), user);

  // The session cookie: HttpOnly, Secure, SameSite=Strict, host-only (__Host-).
  const cookies = await context.cookies(base);
  const session = cookies.find((c) => c.name === '__Host-jumpgate_web');
  assert.ok(session, `no session cookie in ${JSON.stringify(cookies.map((c) => c.name))}`);
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the page can read the cookie');

  // This host's node, from the real list, with the user's login in its connect menu.
  const row = page.locator('table.nodes tbody tr').filter({ has: page.locator('th', { hasText: nodeName }) });
  await row.waitFor();
  await row.locator('summary').click();
  const link = row.getByRole('link', { name: nodeLogin, exact: true });
  assert.equal(await link.getAttribute('href'), `/web/terminal/${encodeURIComponent(nodeName)}/${nodeLogin}`);
  await page.screenshot({ path: join(artefacts, 'resources-real.png'), fullPage: true });

  // Log out: the server ends the session, a reload shows the plain login form.
  await page.getByRole('button', { name: 'Log out', exact: true }).click();
  await page.getByTestId('notice').filter({ hasText: 'You are logged out.' }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  assert.equal(await page.getByTestId('notice').count(), 0);
  assert.deepEqual(problems, []);
});

// ---------------------------------------------------------------------------------------
// The pages against the contract of /webapi/web/* (docs/web.md), with those endpoints
// answered in the browser by `contractServer` (Playwright's page.route): the app and its
// headers still come from the real proxy. These cover what the real endpoints cannot show
// yet; once they land, the same assertions run against them (see the report in docs/web.md).

const xss = '<script>alert(1)</script>';
const xssHost = '<img src=x onerror=alert(2)>';

function contractNodes() {
  const nodes = [];
  for (let i = 1; i <= 120; i++) {
    nodes.push({
      hostname: `node-${String(i).padStart(3, '0')}`,
      uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      labels: { env: i % 2 === 0 ? 'prod' : 'staging', rack: `r${i % 4}` },
    });
  }
  nodes.push({ hostname: xssHost, uuid: '00000000-0000-4000-8000-999999999999', labels: { note: xss } });
  return nodes;
}

/** Answers /webapi/web/* as the contract says, for one logged-in user; records requests. */
async function contractServer(page, { sessionActive = true } = {}) {
  const state = { active: sessionActive, csrf: 'csrf-token-1', requests: [] };
  const nodes = contractNodes();
  const session = () => ({
    user: xss,
    roles: ['access'],
    csrf_token: state.csrf,
    idle_timeout_seconds: 600,
    expires_unix: 1790000000,
  });
  const json = (route, status, body) =>
    route.fulfill({ status, contentType: 'application/json', body: body === undefined ? '' : JSON.stringify(body) });
  const unauthenticated = { error: { code: 'unauthenticated', message: 'no web session' } };
  await page.route('**/webapi/web/**', async (route) => {
    const request = route.request();
    const url = new URL(request.url());
    state.requests.push({ method: request.method(), path: url.pathname, query: url.searchParams, headers: request.headers() });
    const csrfOk = request.headers()['x-csrf-token'] === state.csrf;
    if (url.pathname === '/webapi/web/login' && request.method() === 'POST') {
      state.active = true;
      return json(route, 200, session());
    }
    if (!state.active) {
      return json(route, 401, unauthenticated);
    }
    if (url.pathname === '/webapi/web/session' && request.method() === 'GET') {
      return json(route, 200, session());
    }
    if (url.pathname === '/webapi/web/session' && request.method() === 'DELETE') {
      if (!csrfOk) return json(route, 403, { error: { code: 'csrf', message: 'missing CSRF token' } });
      state.active = false;
      return json(route, 204);
    }
    if (url.pathname === '/webapi/web/sessions/logout-all' && request.method() === 'POST') {
      if (!csrfOk) return json(route, 403, { error: { code: 'csrf', message: 'missing CSRF token' } });
      state.active = false;
      return json(route, 204);
    }
    if (url.pathname === '/webapi/web/nodes' && request.method() === 'GET') {
      const search = (url.searchParams.get('search') ?? '').toLowerCase();
      const labels = url.searchParams.getAll('label');
      let found = nodes.filter(
        (n) =>
          (search === '' ||
            n.hostname.toLowerCase().includes(search) ||
            Object.entries(n.labels).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(search))) &&
          labels.every((l) => {
            const [k, v] = [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)];
            return n.labels[k] === v;
          }),
      );
      found.sort((a, b) => (a.hostname < b.hostname ? -1 : 1));
      if (url.searchParams.get('sort') === '-hostname') found.reverse();
      const limit = Number(url.searchParams.get('limit') ?? '50');
      const offset = Number(url.searchParams.get('cursor') ?? '0');
      const slice = found.slice(offset, offset + limit);
      return json(route, 200, {
        nodes: slice,
        next_cursor: offset + limit < found.length ? String(offset + limit) : null,
        total: found.length,
        logins: ['root', 'ubuntu'],
      });
    }
    return json(route, 404, { error: { code: 'not_found', message: 'no such endpoint' } });
  });
  return state;
}

maybe('resources (contract): names and labels render as text, search, label filter, sort, paging, connect menu', async (t) => {
  const { page, problems } = await open(t);
  const dialogs = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  const server = await contractServer(page);
  await page.goto(`${base}/web`);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/web');
  const count = page.getByTestId('node-count');
  await assert.doesNotReject(count.filter({ hasText: 'Nodes 1–50 of 121' }).waitFor());

  // The header: the user name (a script tag) as text, and no script ran.
  assert.equal(await page.getByTestId('user').textContent(), xss);
  // The XSS node sorts first ('<' < 'n'): its name and label are text.
  const firstRow = page.locator('table.nodes tbody tr').first();
  assert.equal(await firstRow.locator('th').textContent(), xssHost);
  assert.equal(await firstRow.locator('.chip').first().textContent(), `note=${xss}`);
  assert.equal(await page.locator('table.nodes script, table.nodes img').count(), 0);

  // Paging with the cursor: Next sends it, Previous goes back.
  await page.getByRole('button', { name: 'Next page' }).click();
  await count.filter({ hasText: 'Nodes 51–100 of 121' }).waitFor();
  assert.equal(server.requests.at(-1).query.get('cursor'), '50');
  await page.getByRole('button', { name: 'Previous page' }).click();
  await count.filter({ hasText: 'Nodes 1–50 of 121' }).waitFor();

  // Sort by name, descending then back.
  await page.getByRole('button', { name: /Hostname/ }).click();
  await page.locator('table.nodes tbody tr th').first().filter({ hasText: 'node-120' }).waitFor();
  assert.equal(server.requests.at(-1).query.get('sort'), '-hostname');
  await page.getByRole('button', { name: /Hostname/ }).click();
  await page.locator('table.nodes tbody tr th').first().filter({ hasText: xssHost }).waitFor();

  // Search (debounced), then a label filter typed in, then one removed.
  await page.getByLabel('Search').fill('node-01');
  await count.filter({ hasText: 'of 10' }).waitFor();
  assert.equal(server.requests.at(-1).query.get('search'), 'node-01');
  await page.getByLabel('Filter by label').fill('env=prod');
  await page.getByLabel('Filter by label').press('Enter');
  await count.filter({ hasText: 'of 5' }).waitFor();
  assert.deepEqual(server.requests.at(-1).query.getAll('label'), ['env=prod']);
  await page.getByLabel('Filter by label').fill('nonsense');
  await page.getByLabel('Filter by label').press('Enter');
  await page.getByText('Write a label filter as key=value').waitFor();
  await page.getByRole('button', { name: 'Remove filter env=prod' }).click();
  await count.filter({ hasText: 'of 10' }).waitFor();

  // The connect menu, by keyboard: focus, Enter opens, the logins link to the terminal page.
  const menu = page.locator('details.menu').first();
  await menu.locator('summary').focus();
  await page.keyboard.press('Enter');
  const links = menu.getByRole('link');
  assert.deepEqual(await links.allTextContents(), ['root', 'ubuntu']);
  assert.equal(await links.first().getAttribute('href'), '/web/terminal/node-010/root');
  await page.screenshot({ path: join(artefacts, 'resources.png'), fullPage: true });
  await page.keyboard.press('Escape');
  assert.equal(await menu.evaluate((d) => d.open), false);
  await menu.locator('summary').click();
  await links.nth(1).click();
  await page.getByRole('heading', { name: 'Terminal: ubuntu@node-010' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/web/terminal/node-010/ubuntu');

  assert.deepEqual(dialogs, []);
  // The terminal page's WebSocket reaches the real proxy, which this mocked session does not
  // log in to: its refusal (logged or not, depending on timing) is not this test's concern.
  assert.deepEqual(
    problems.filter((problem) => !problem.includes('/webapi/web/terminal?')),
    [],
  );
});

maybe('logout (contract): the CSRF token goes with it, and an expired session says so', async (t) => {
  const { page, problems } = await open(t);
  const server = await contractServer(page);
  await page.goto(`${base}/web/resources`);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  await page.getByRole('button', { name: 'Log out', exact: true }).click();
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  const logout = server.requests.find((r) => r.method === 'DELETE');
  assert.equal(logout.headers['x-csrf-token'], 'csrf-token-1');
  await page.getByTestId('notice').filter({ hasText: 'You are logged out.' }).waitFor();
  // GETs carry no token.
  assert.ok(server.requests.filter((r) => r.method === 'GET').every((r) => r.headers['x-csrf-token'] === undefined));

  // Log in again (the contract server accepts anything), then everywhere.
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  await page.getByRole('button', { name: 'Log out everywhere' }).click();
  await page.getByTestId('notice').filter({ hasText: 'You are logged out on every device.' }).waitFor();
  const everywhere = server.requests.find((r) => r.path === '/webapi/web/sessions/logout-all');
  assert.equal(everywhere.headers['x-csrf-token'], 'csrf-token-1');

  // A session that ends on the server: the next call's 401 brings the login page back.
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByTestId('node-count').filter({ hasText: 'of 121' }).waitFor();
  server.active = false;
  await page.getByLabel('Search').fill('x');
  await page.getByTestId('notice').filter({ hasText: 'Your session expired' }).waitFor();

  // A session that ends while the page is closed: the reload says so too, once.
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByTestId('node-count').filter({ hasText: 'of 121' }).waitFor();
  server.active = false;
  await page.reload();
  await page.getByTestId('notice').filter({ hasText: 'Your session expired' }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  assert.equal(await page.getByTestId('notice').count(), 0);
  assert.deepEqual(problems, []);
});

maybe('pages are readable at 200% zoom (no sideways scrolling)', async (t) => {
  // 200% zoom of a 1280x800 window: a 640x400 CSS-pixel viewport at twice the density.
  const { page, problems } = await open(t, { viewport: { width: 640, height: 400 }, deviceScaleFactor: 2 });
  await contractServer(page, { sessionActive: false });
  const noSideways = () =>
    page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
  await page.goto(`${base}/web/login`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  assert.ok(await noSideways(), 'the login page scrolls sideways at 200%');
  await page.screenshot({ path: join(artefacts, 'login-200-percent.png'), fullPage: true });
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  await page.getByTestId('node-count').filter({ hasText: 'of 121' }).waitFor();
  assert.ok(await noSideways(), 'the resources page scrolls sideways at 200%');
  await page.screenshot({ path: join(artefacts, 'resources-200-percent.png'), fullPage: false });
  assert.deepEqual(problems, []);
});

// Against a real cluster holding 10,000 more nodes and one whose host name and label are
// markup (web_ui.rs registers them as heartbeats would): the pages answer quickly, and the
// markup shows as text.
maybe('resources (real): ten thousand nodes page, search and filter quickly; markup is text', async (t) => {
  const { page, problems } = await open(t);
  const dialogs = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  await page.goto(`${base}/web/resources`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('One-time code').fill(totp(otpauth));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  const count = page.getByTestId('node-count');
  // 10,000 + the markup node + this host's node.
  await count.filter({ hasText: /of 10,?002/ }).waitFor();

  // Each step: from the click to the page showing the new rows.
  const timed = async (what, action, shown) => {
    const started = Date.now();
    await action();
    await shown();
    const took = Date.now() - started;
    t.diagnostic(`${what}: ${took} ms`);
    return took;
  };
  const times = [];
  times.push(await timed('next page', () => page.getByRole('button', { name: 'Next page' }).click(),
    () => count.filter({ hasText: /Nodes 51–100 of/ }).waitFor()));
  times.push(await timed('search', () => page.getByLabel('Search').fill('node-09999'),
    () => page.locator('table.nodes tbody tr th').filter({ hasText: 'node-09999' }).waitFor()));
  await page.getByLabel('Search').fill('');
  times.push(await timed('label filter', async () => {
    await page.getByLabel('Filter by label').fill('rack=r7');
    await page.getByLabel('Filter by label').press('Enter');
  }, () => count.filter({ hasText: /of 1,?000/ }).waitFor()));
  // The search is debounced (a few hundred ms of it are the page waiting for typing to stop).
  assert.ok(times.every((took) => took < 2000), `pages took ${times.join(', ')} ms`);

  // The markup node, found by its label: its name and label are text, nothing ran.
  await page.goto(`${base}/web/resources`);
  await page.getByLabel('Search').fill('onerror');
  const row = page.locator('table.nodes tbody tr').first();
  await row.locator('th').filter({ hasText: xssHost }).waitFor();
  assert.equal(await row.locator('th').textContent(), xssHost);
  assert.equal(await row.locator('.chip').first().textContent(), `note=${xss}`);
  assert.equal(await page.locator('table.nodes script, table.nodes img').count(), 0);
  await page.screenshot({ path: join(artefacts, 'resources-markup-real.png'), fullPage: true });
  assert.deepEqual(dialogs, []);
  assert.deepEqual(problems, []);
});
