// Single sign-on through SAML 2.0 (docs/sso.md), against a real `jumpgate start --dev` and
// a real SAML IdP (samlify, crates/saml/tests/idp/idp.js with its login form), both started
// by crates/jumpgate/tests/sso_saml.rs, on the shared harness (harness.mjs).
//
// Besides the harness's environment:
//   JUMPGATE_IDP_USERS   the IdP's users file (rewritten here between logins)
//   JUMPGATE_SAML_IDP    the IdP's base URL (http://127.0.0.1:PORT)
//   JUMPGATE_SSO_LOGIN   the OS login ann's e-mail maps to ({{email.local(external.email)}})
//   JUMPGATE_JSH         the jsh binary
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { base, env, jshSsoLogin, maybe, nodeName, open, ssoWebLogin, webSession } from './harness.mjs';

const usersFile = env('JUMPGATE_IDP_USERS');
const idpBase = env('JUMPGATE_SAML_IDP');
const ssoLogin = env('JUMPGATE_SSO_LOGIN');
const jsh = env('JUMPGATE_JSH');
const annEmail = `${ssoLogin}@example.com`;
const acs = `${base}/v1/webapi/saml/acs/idp`;

function setUser(name, user) {
  const users = JSON.parse(readFileSync(usersFile, 'utf8'));
  if (user === null) {
    delete users[name];
  } else {
    users[name] = user;
  }
  writeFileSync(usersFile, JSON.stringify(users));
}

function samlUser(nameid, groups, scenario = 'ok') {
  return { nameid, attributes: { email: [nameid], groups }, scenario };
}

/** The IdP's own login form, as a person fills it. */
async function idpLogin(page, name) {
  await page.locator('input[name="username"]').fill(name);
  await page.locator('input[name="password"]').fill('any password: the test IdP takes it');
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Logs `name` in through the login page's button; returns the opened page. */
function webLogin(t, name) {
  return ssoWebLogin(t, 'idp', (page) => idpLogin(page, name));
}

/** A refusal page's text, once it shows. */
async function refusal(page) {
  await page.getByText('Single sign-on failed').waitFor();
  return page.locator('body').innerText();
}

/**
 * `name`'s login at the IdP in a fresh browser, stopped before its answer reaches the
 * proxy: the form fields the IdP had the browser post to the ACS.
 */
async function stoppedAnswer(t, name) {
  const { page, context } = await open(t);
  let posted = null;
  await context.route(/\/saml\/acs\//, async (route) => {
    posted = route.request().postData();
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'stopped before the proxy' });
  });
  await page.goto(`${base}/web/login`);
  await page.getByTestId('sso-idp').click();
  await idpLogin(page, name);
  await page.getByText('stopped before the proxy').waitFor();
  assert.ok(posted, 'the IdP posted nothing');
  return { page, fields: Object.fromEntries(new URLSearchParams(posted)) };
}

/** Has `page`, on a page of `origin`, post `fields` to the ACS as an IdP's form does. */
async function postToAcs(page, origin, fields) {
  await page.goto(origin);
  await page.evaluate(
    ({ action, fields }) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = action;
      for (const [name, value] of Object.entries(fields)) {
        const input = document.createElement('input');
        input.type = 'hidden';
        input.name = name;
        input.value = value;
        form.append(input);
      }
      document.body.append(form);
      form.submit();
    },
    { action: acs, fields },
  );
}

maybe('saml: the proxy serves the SP metadata the IdP is given', async (t) => {
  const { page } = await open(t);
  await page.goto(`${base}/web/login`);
  const metadata = await page.evaluate(async () => {
    const response = await fetch('/v1/webapi/saml/metadata/idp');
    return { status: response.status, type: response.headers.get('content-type'), body: await response.text() };
  });
  assert.equal(metadata.status, 200, metadata.body);
  assert.match(metadata.type, /samlmetadata\+xml/);
  assert.ok(metadata.body.includes(`entityID="${base}/v1/webapi/saml/metadata/idp"`), metadata.body);
  assert.ok(metadata.body.includes(`Location="${acs}"`), metadata.body);
  assert.match(metadata.body, /WantAssertionsSigned="true"/);
});

maybe('saml: the login page button logs ann in through the IdP, roles from her groups', async (t) => {
  const { page, problems } = await webLogin(t, 'ann');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/web');
  const current = await webSession(page);
  assert.equal(current.user, annEmail);
  assert.deepEqual(current.roles, ['sso-dev']);
  // The e-mail attribute's local part is her login, through the role's template.
  assert.ok(current.logins.includes(ssoLogin), JSON.stringify(current));
  assert.deepEqual(problems, []);
});

maybe('saml: jsh login --auth idp --browser none, then jsh ssh with the templated login', async (t) => {
  const run = await jshSsoLogin(t, jsh, 'idp', /http:\/\/127\.0\.0\.1:\d+\/sso\?\S+/);
  assert.ok(run.url.startsWith(`${idpBase}/sso?SAMLRequest=`), run.url);
  const { page } = await open(t);
  await page.goto(run.url);
  await idpLogin(page, 'ann');
  await page.getByText('Logged in to Jumpgate').waitFor();
  assert.equal(await run.exited, 0, `jsh login: ${run.stderr}`);
  assert.match(run.stdout, new RegExp(`Logged in as: ${annEmail.replace('.', '\\.')}`));
  assert.match(run.stdout, /Roles: +sso-dev\n/);
  const ssh = spawnSync(jsh, ['ssh', `${ssoLogin}@${nodeName}`, 'whoami'], {
    env: { ...process.env, JUMPGATE_HOME: run.home },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(ssh.status, 0, ssh.stderr);
  assert.equal(ssh.stdout.trim(), ssoLogin);
});

maybe('saml: the IdP\'s SessionNotOnOrAfter ends the login, in jsh and on the web', async (t) => {
  // sid's IdP session ends in ten minutes, well before the connector's twelve hours.
  const run = await jshSsoLogin(t, jsh, 'idp', /http:\/\/127\.0\.0\.1:\d+\/sso\?\S+/);
  const { page } = await open(t);
  await page.goto(run.url);
  await idpLogin(page, 'sid');
  await page.getByText('Logged in to Jumpgate').waitFor();
  assert.equal(await run.exited, 0, `jsh login: ${run.stderr}`);
  const validFor = run.stdout.match(/\[valid for (\d+)m\]/);
  assert.ok(validFor && Number(validFor[1]) <= 10, run.stdout);
  const web = await webLogin(t, 'sid');
  await web.page.getByRole('heading', { name: 'Resources' }).waitFor();
  const session = await webSession(web.page);
  const left = session.expires_unix - Date.now() / 1000;
  assert.ok(left > 0 && left <= 10 * 60 + 5, JSON.stringify(session));
});

maybe('saml: a changed group changes the roles at the next login', async (t) => {
  setUser('ann', samlUser(annEmail, ['devs', 'auditors']));
  const { page } = await webLogin(t, 'ann');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.deepEqual((await webSession(page)).roles, ['auditor', 'sso-dev']);
  setUser('ann', samlUser(annEmail, ['devs']));
  const again = await webLogin(t, 'ann');
  await again.page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.deepEqual((await webSession(again.page)).roles, ['sso-dev']);
});

maybe('saml: attributes that map to no role are refused, saying which attributes came', async (t) => {
  const { page } = await webLogin(t, 'nora');
  const text = await refusal(page);
  assert.match(text, /none of their claims maps to a role/);
  assert.match(text, /groups: \[visitors, guests\]/);
  assert.match(text, /attributes_to_roles/);
  assert.equal(await webSession(page), null);
});

maybe('saml: a user the IdP no longer knows is refused', async (t) => {
  setUser('gone', samlUser('gone@example.com', ['devs']));
  const before = await webLogin(t, 'gone');
  await before.page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.deepEqual((await webSession(before.page)).roles, ['sso-dev']);
  setUser('gone', null);
  const { page } = await webLogin(t, 'gone');
  await page.getByText('Unknown user').waitFor();
  assert.equal(new URL(page.url()).origin, idpBase);
  const onProxy = await open(t);
  await onProxy.page.goto(`${base}/web/login`);
  assert.equal(await webSession(onProxy.page), null);
});

maybe('saml: an unsigned assertion is refused', async (t) => {
  const { page } = await webLogin(t, 'uma');
  assert.match(await refusal(page), /neither the assertion nor the response is signed/);
  assert.equal(await webSession(page), null);
});

maybe('saml: an assertion for another audience is refused', async (t) => {
  const { page } = await webLogin(t, 'wanda');
  const text = await refusal(page);
  assert.match(text, /is for audience \["https:\/\/another-sp\.example\.com\/saml"\]/);
  assert.equal(await webSession(page), null);
});

maybe('saml: an assertion signed by another key is refused', async (t) => {
  const { page } = await webLogin(t, 'oscar');
  assert.match(await refusal(page), /the signature does not verify with the IdP's signing certificate/);
  assert.equal(await webSession(page), null);
});

maybe('saml: an expired assertion is refused', async (t) => {
  const { page } = await webLogin(t, 'ed');
  assert.match(await refusal(page), /expired at/);
  assert.equal(await webSession(page), null);
});

maybe('saml: a replayed response is refused as a replay', async (t) => {
  // A login whose post to the ACS is recorded on its way...
  const { page, context } = await open(t);
  let posted = null;
  context.on('request', (request) => {
    if (request.method() === 'POST' && request.url() === acs) {
      posted = request.postData();
    }
  });
  await page.goto(`${base}/web/login`);
  await page.getByTestId('sso-idp').click();
  await idpLogin(page, 'ann');
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.ok(posted, 'no post to the ACS was seen');
  // ...and posted again, as someone who copied it would.
  const replay = await open(t);
  await postToAcs(replay.page, `${base}/web/login`, Object.fromEntries(new URLSearchParams(posted)));
  const text = await refusal(replay.page);
  assert.match(text, /already used: an assertion logs in once/);
  assert.equal(await webSession(replay.page), null);
});

maybe('saml: another browser\'s response is refused (login CSRF), and it is used up', async (t) => {
  // The attacker's own login, stopped before the proxy...
  const attacker = await stoppedAnswer(t, 'ann');
  // ...posted to the ACS from another site in the victim's browser, as an attacker's page
  // would: the victim never started this login, so no cookie of theirs matches it.
  const victim = await open(t);
  await postToAcs(victim.page, `${idpBase}/sso`, attacker.fields);
  assert.match(await refusal(victim.page), /started in another browser/);
  assert.equal(await webSession(victim.page), null);
  // A victim with a login of their own pending is refused the same way.
  const pending = await open(t);
  await pending.page.goto(`${base}/web/login`);
  await pending.page.getByTestId('sso-idp').click();
  await pending.page.locator('input[name="username"]').waitFor();
  const second = await stoppedAnswer(t, 'ann');
  await postToAcs(pending.page, `${idpBase}/sso`, second.fields);
  assert.match(await refusal(pending.page), /started in another browser/);
  assert.equal(await webSession(pending.page), null);
  // The attacker's state went with that attempt: their answer never works again (a
  // fresh page: the attacker's own stops every post to the ACS).
  const again = await open(t);
  await postToAcs(again.page, `${idpBase}/sso`, attacker.fields);
  assert.match(await refusal(again.page), /unknown, expired|already used/);
});
