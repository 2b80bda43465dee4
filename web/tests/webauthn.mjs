// Browser tests of security keys and passkeys (WebAuthn, docs/web.md) against a real
// cluster made by crates/jumpgate/tests/web_webauthn.rs, in Chromium with its virtual
// authenticator (CDP `WebAuthn.addVirtualAuthenticator`: a CTAP2 key with resident
// credentials and user verification, touched automatically). On the shared harness.
//
// The cluster's RP ID is `jumpgate.test`; the proxy's public address is
// `login.jumpgate.test:PORT`, and Chromium maps `*.jumpgate.test` to 127.0.0.1
// (JUMPGATE_CHROMIUM_ARGS), so `https://evil.login.jumpgate.test:PORT` is a page under the RP
// ID that is not the proxy's origin. Besides the harness's environment:
//   JUMPGATE_SITE, JUMPGATE_EVIL_SITE       the two origins
//   JUMPGATE_OTHER_USER, JUMPGATE_OTHER_OTPAUTH   a second user (password: JUMPGATE_PASSWORD)
//   JUMPGATE_KEY_FILE    where alice's key is kept between the two runs (`on:` tests with
//                        second_factor: on, then `webauthn:` tests after a restart with
//                        second_factor: webauthn)
//   JUMPGATE_INVITEE, JUMPGATE_INVITE   a user invited for this run, and the invite's token
//   JUMPGATE_OTHER_INVITE                another user's invite token
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { env, maybe, open, otpauth, password, totp, user } from './harness.mjs';

const site = env('JUMPGATE_SITE');
const evilSite = env('JUMPGATE_EVIL_SITE');
const otherUser = env('JUMPGATE_OTHER_USER');
const otherOtpauth = env('JUMPGATE_OTHER_OTPAUTH');
const keyFile = env('JUMPGATE_KEY_FILE');
const invitee = env('JUMPGATE_INVITEE');
const invite = env('JUMPGATE_INVITE');
const otherInvite = env('JUMPGATE_OTHER_INVITE');
const RP_ID = 'jumpgate.test';
const REFUSED = 'the security key was not accepted';

const b64url = (b64) => b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** A virtual authenticator on `page`, holding `credentials` (CDP's shape). */
async function authenticator(context, page, credentials = []) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'usb',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  for (const credential of credentials) {
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
  }
  return {
    credentials: async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials,
  };
}

/** A credential the cluster never saw: a fresh P-256 key for `rpId`, naming `userHandle`. */
function strangerCredential(userHandle, rpId = RP_ID) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    credentialId: randomBytes(32).toString('base64'),
    isResidentCredential: true,
    rpId,
    privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
    userHandle,
    signCount: 0,
  };
}

async function loginPage(page, origin = site) {
  await page.goto(`${origin}/web/login`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  // The page offers keys once it has read the cluster's policy.
  await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** The seconds a rate limit's message says to wait ("try again in N s"), or null. */
const limited = (message) => {
  const found = /too many attempts.*try again in (\d+) s/.exec(message ?? '');
  return found === null ? null : Number(found[1]);
};

/**
 * Logs in on the page. Auth allows 10 logins from one address at once, then one every
 * 6 s, and every test here logs in from 127.0.0.1: a refusal for that waits and retries.
 */
async function logIn(page, name, code = '') {
  for (let attempt = 0; ; attempt++) {
    await loginPage(page);
    await page.getByLabel('User name').fill(name);
    await page.getByLabel('Password').fill(password);
    await page.getByLabel('One-time code').fill(code);
    await page.getByRole('button', { name: 'Log in' }).click();
    const outcome = await Promise.race([
      page.getByRole('heading', { name: 'Resources' }).waitFor().then(() => null),
      page.getByTestId('login-error').waitFor().then(() => page.getByTestId('login-error').textContent()),
    ]);
    const wait = limited(outcome);
    if (outcome === null || wait === null || attempt >= 3) {
      return;
    }
    await sleep((wait + 1) * 1000);
  }
}

async function loggedInAs(page, name) {
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  assert.equal(await page.getByTestId('user').textContent(), name);
}

/** Registers a key named `name` on the Security keys page (the password asked again). */
async function register(page, name, { passkey = true, pass = password } = {}) {
  await page.goto(`${site}/web/security-keys`);
  await page.getByRole('heading', { name: 'Security keys' }).waitFor();
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Your password').fill(pass);
  const box = page.getByRole('checkbox');
  if ((await box.isChecked()) !== passkey) {
    await box.click();
  }
  await page.getByRole('button', { name: 'Register key' }).click();
}

/**
 * In the page: a login begun at `begin.path`, the key asked with the options changed by
 * `tweak` (`allow`: credential IDs, `rpId`), the answer sent to the finish. With
 * `again`, a second answer to the same challenge is sent too. Returns the answers.
 */
async function craftedLogin(page, begin, tweak = {}) {
  for (let attempt = 0; ; attempt++) {
    const result = await craftedOnce(page, begin, tweak);
    const wait = result.begin.status === 429 ? limited(result.begin.json?.error?.message) : null;
    if (wait === null || attempt >= 3) {
      return result;
    }
    await sleep((wait + 1) * 1000);
  }
}

function craftedOnce(page, begin, tweak) {
  return page.evaluate(
    async ({ begin, tweak }) => {
      const bytes = (t) =>
        Uint8Array.from(atob(t.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((t.length + 3) % 4)), (c) => c.charCodeAt(0)).buffer;
      const text = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      const post = async (path, body) => {
        const response = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
        const raw = await response.text();
        let json = null;
        try {
          json = JSON.parse(raw);
        } catch {
          json = null;
        }
        return { status: response.status, json };
      };
      const started = await post(begin.path, begin.body);
      if (started.status !== 200 || started.json.options === null) {
        return { begin: started };
      }
      const o = started.json.options.publicKey;
      const allow = tweak.allow ?? (o.allowCredentials ?? []).map((c) => c.id);
      const publicKey = {
        ...o,
        challenge: bytes(o.challenge),
        rpId: tweak.rpId ?? o.rpId,
        allowCredentials: allow.map((id) => ({ type: 'public-key', id: bytes(id) })),
      };
      const answer = async () => {
        const credential = await navigator.credentials.get({ publicKey });
        const r = credential.response;
        return {
          id: credential.id,
          rawId: text(credential.rawId),
          type: credential.type,
          extensions: {},
          response: {
            authenticatorData: text(r.authenticatorData),
            clientDataJSON: text(r.clientDataJSON),
            signature: text(r.signature),
            userHandle: r.userHandle ? text(r.userHandle) : null,
          },
        };
      };
      const body = { ceremony_id: started.json.ceremony_id, credential: await answer() };
      const first = await post('/webapi/web/mfa/login/finish', body);
      const result = { begin: started, first, body };
      if (tweak.again) {
        result.replayed = await post('/webapi/web/mfa/login/finish', body);
        result.fresh = await post('/webapi/web/mfa/login/finish', { ...body, credential: await answer() });
      }
      return result;
    },
    { begin, tweak },
  );
}

const keyLoginBegin = (name) => ({ path: '/webapi/web/mfa/login/begin', body: { user: name, password } });
const passwordlessBegin = { path: '/webapi/web/mfa/passwordless/begin', body: {} };

/** Alice's registered key (CDP's shape, with its private key), kept current across tests. */
let blue = null;
async function keep(key) {
  const [credential] = await key.credentials();
  blue = credential;
  writeFileSync(keyFile, JSON.stringify(blue));
}
function keyOfAlice() {
  if (blue === null) {
    blue = JSON.parse(readFileSync(keyFile, 'utf8'));
  }
  return blue;
}

// ---- second_factor: on ----

maybe('on: register a key after the password; a wrong password registers nothing', async (t) => {
  const { page, context, problems } = await open(t);
  const key = await authenticator(context, page);
  await logIn(page, user, totp(otpauth));
  await loggedInAs(page, user);
  await register(page, 'blue', { pass: 'not the password at all' });
  await page.getByTestId('keys-error').filter({ hasText: 'invalid user name, password' }).waitFor();
  assert.deepEqual(await key.credentials(), [], 'no key was asked to make a credential');
  await page.getByTestId('no-keys').waitFor();
  await register(page, 'blue');
  await page.getByTestId('keys-notice').filter({ hasText: 'blue registered' }).waitFor();
  await page.getByTestId('key-blue').waitFor();
  const [credential] = await key.credentials();
  assert.equal(credential.rpId, RP_ID);
  assert.equal(credential.isResidentCredential, true, 'a passkey is discoverable');
  // The same name again is refused (and the key's exclusion list stops a second credential).
  await register(page, 'blue');
  await page.getByTestId('keys-error').waitFor();
  await keep(key);
  assert.deepEqual(problems, []);
});

maybe('on: the login page uses the key after the password', async (t) => {
  const { page, context, problems } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  await logIn(page, user);
  await loggedInAs(page, user);
  await keep(key);
  assert.ok(blue.signCount > 0, 'the key was used');
  assert.deepEqual(problems, []);
});

maybe('on: sign in with a passkey alone', async (t) => {
  const { page, context, problems } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  await loginPage(page);
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await loggedInAs(page, user);
  await keep(key);
  assert.deepEqual(problems, []);
});

maybe('on: a replayed answer and a re-used challenge are refused', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  await loginPage(page);
  const result = await craftedLogin(page, keyLoginBegin(user), { again: true });
  assert.equal(result.first.status, 200, JSON.stringify(result));
  assert.equal(result.first.json.user, user);
  for (const refused of [result.replayed, result.fresh]) {
    assert.equal(refused.status, 401, JSON.stringify(refused));
    assert.match(refused.json.error.message, /expired or was already used/);
  }
  // The same for a passwordless ceremony.
  const passwordless = await craftedLogin(page, passwordlessBegin, { again: true });
  assert.equal(passwordless.first.status, 200, JSON.stringify(passwordless));
  assert.equal(passwordless.replayed.status, 401);
  assert.equal(passwordless.fresh.status, 401);
  await keep(key);
});

maybe('on: an assertion from an unregistered credential is refused', async (t) => {
  // A key claiming alice's user handle, and a key naming nobody: each alone in a browser.
  for (const handle of [keyOfAlice().userHandle, randomBytes(16).toString('base64')]) {
    const { page, context } = await open(t);
    const stranger = strangerCredential(handle);
    await authenticator(context, page, [stranger]);
    await loginPage(page);
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.getByTestId('login-error').filter({ hasText: REFUSED }).waitFor();
    // As alice's second factor too, the key named explicitly.
    const result = await craftedLogin(page, keyLoginBegin(user), { allow: [b64url(stranger.credentialId)] });
    assert.equal(result.first?.status, 401, JSON.stringify(result));
  }
});

maybe('on: another user\'s key does not log in as this user', async (t) => {
  const other = await open(t);
  const otherKey = await authenticator(other.context, other.page);
  await logIn(other.page, otherUser, totp(otherOtpauth));
  await loggedInAs(other.page, otherUser);
  await register(other.page, 'bobs-key');
  await other.page.getByTestId('keys-notice').waitFor();
  const [bobs] = await otherKey.credentials();
  // Alice's password, then bob's key answering alice's challenge.
  const { page, context } = await open(t);
  await authenticator(context, page, [bobs]);
  await loginPage(page);
  const result = await craftedLogin(page, keyLoginBegin(user), { allow: [b64url(bobs.credentialId)] });
  assert.equal(result.first?.status, 401, JSON.stringify(result));
  assert.match(result.first.json.error.message, new RegExp(REFUSED));
  // Bob's passkey alone logs bob in, not alice.
  const own = await craftedLogin(page, passwordlessBegin);
  assert.equal(own.first?.status, 200, JSON.stringify(own));
  assert.equal(own.first.json.user, otherUser);
});

maybe('on: a page of another origin under the RP ID is refused', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  // The browser lets evil.login.jumpgate.test use the RP ID jumpgate.test; the server must not.
  await page.goto(`${evilSite}/web/login`);
  await page.getByRole('heading', { name: 'Log in to Jumpgate' }).waitFor();
  for (const begin of [keyLoginBegin(user), passwordlessBegin]) {
    const result = await craftedLogin(page, begin);
    assert.equal(result.begin.status, 200, JSON.stringify(result.begin));
    assert.equal(result.first?.status, 401, JSON.stringify(result));
    assert.match(result.first.json.error.message, new RegExp(REFUSED));
  }
  await keep(key);
});

maybe('on: an assertion for another RP ID is refused', async (t) => {
  const { page, context } = await open(t);
  // Alice's own key material, as a credential of the RP ID login.jumpgate.test, which
  // the page at login.jumpgate.test may use: the right origin, the wrong RP ID.
  await authenticator(context, page, [{ ...keyOfAlice(), rpId: 'login.jumpgate.test' }]);
  await loginPage(page);
  const result = await craftedLogin(page, keyLoginBegin(user), { rpId: 'login.jumpgate.test' });
  assert.equal(result.first?.status, 401, JSON.stringify(result));
  assert.match(result.first.json.error.message, new RegExp(REFUSED));
});

maybe('on: a cloned key whose counter went back is refused', async (t) => {
  const { page, context } = await open(t);
  const stored = keyOfAlice();
  assert.ok(stored.signCount > 1, `the key has been used: ${stored.signCount}`);
  await authenticator(context, page, [{ ...stored, signCount: 0 }]);
  await loginPage(page);
  const result = await craftedLogin(page, keyLoginBegin(user));
  assert.equal(result.first?.status, 401, JSON.stringify(result));
});

maybe('on: a removed key is refused', async (t) => {
  const { page, context, problems } = await open(t);
  const blueKey = await authenticator(context, page, [keyOfAlice()]);
  await logIn(page, user);
  await loggedInAs(page, user);
  await keep(blueKey);
  // A second key, on a second page with an authenticator of its own.
  const second = await context.newPage();
  const greenKey = await authenticator(context, second, []);
  await register(second, 'green');
  await second.getByTestId('keys-notice').filter({ hasText: 'green registered' }).waitFor();
  const [green] = await greenKey.credentials();
  await second.getByRole('button', { name: 'Remove green' }).click();
  await second.getByTestId('keys-notice').filter({ hasText: 'green removed' }).waitFor();
  await second.close();
  // And a spare, a second factor only (not discoverable), which jsh removes later.
  const third = await context.newPage();
  const spareKey = await authenticator(context, third, []);
  await register(third, 'spare', { passkey: false });
  await third.getByTestId('keys-notice').filter({ hasText: 'spare registered' }).waitFor();
  const [spare] = await spareKey.credentials();
  assert.equal(spare.isResidentCredential, false, 'a second factor only is not discoverable');
  await third.close();
  const fresh = await open(t);
  await authenticator(fresh.context, fresh.page, [green]);
  await loginPage(fresh.page);
  await fresh.page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await fresh.page.getByTestId('login-error').filter({ hasText: REFUSED }).waitFor();
  const crafted = await craftedLogin(fresh.page, keyLoginBegin(user), { allow: [b64url(green.credentialId)] });
  assert.equal(crafted.first?.status, 401, JSON.stringify(crafted));
  assert.deepEqual(problems, []);
});

maybe('on: registering and removing keys need the session and its CSRF token', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  await logIn(page, user);
  await loggedInAs(page, user);
  // (Kept: the next run uses the key's counter as it is now.)
  await keep(key);
  const statuses = await page.evaluate(async (pass) => {
    const send = async (method, path, body, csrf) => {
      const headers = { 'Content-Type': 'application/json' };
      if (csrf) {
        headers['X-CSRF-Token'] = (await (await fetch('/webapi/web/session')).json()).csrf_token;
      }
      const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      return response.status;
    };
    return [
      await send('POST', '/webapi/web/mfa/devices/register/begin', { password: pass, name: 'x' }, false),
      await send('DELETE', '/webapi/web/mfa/devices/blue', undefined, false),
      await send('POST', '/webapi/web/mfa/devices/register/begin', { password: pass, name: 'blue' }, true),
    ];
  }, password);
  // No token: 403 twice; with it, a key named like an existing one: 409.
  assert.deepEqual(statuses, [403, 403, 409]);
  await page.goto(`${site}/web/security-keys`);
  await page.getByTestId('key-blue').waitFor();
  // Without a session at all.
  const anonymous = await open(t);
  await anonymous.page.goto(`${site}/web/login`);
  const status = await anonymous.page.evaluate(async () => (await fetch('/webapi/web/mfa/devices')).status);
  assert.equal(status, 401);
});

maybe('on: an invite offers the app or a key; with a key, the key logs in', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page);
  await page.goto(`${site}/web/invite#${invite}`);
  await page.getByTestId('signup-user').waitFor();
  // A key ceremony begun with the invite, kept aside for the end.
  const aside = await page.evaluate(async (token) => {
    const response = await fetch('/webapi/web/invite/key', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token, name: 'aside' }),
    });
    return response.json();
  }, invite);
  assert.match(aside.ceremony_id, /^[0-9a-f]+$/, JSON.stringify(aside));
  // The app by default (its QR code), a key on request.
  await page.getByTestId('otpauth-uri').waitFor({ state: 'attached' });
  await page.getByTestId('signup-use-key').check();
  assert.equal(await page.getByTestId('otpauth-uri').count(), 0);
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('Password again').fill(password);
  await page.getByLabel('Name of the key').fill('invited-key');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByTestId('signup-done').waitFor();
  assert.equal((await key.credentials()).length, 1);
  await logIn(page, invitee);
  await loggedInAs(page, invitee);
  // The ceremony begun with the invite (no password) does not add a key through the
  // signed-in registration (which asks for the password): refused before the answer is read.
  const finished = await page.evaluate(async (id) => {
    const csrf = (await (await fetch('/webapi/web/session')).json()).csrf_token;
    const response = await fetch('/webapi/web/mfa/devices/register/finish', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ ceremony_id: id, credential: {} }),
    });
    return { status: response.status, body: await response.text() };
  }, aside.ceremony_id);
  assert.equal(finished.status, 403, finished.body);
  assert.match(finished.body, /begun for another signup, or outside one/);
});

// ---- second_factor: webauthn (the same cluster, restarted) ----

maybe('webauthn: the password alone or with a code is refused; the key logs in', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  await loginPage(page);
  const answers = await page.evaluate(
    async ({ name, pass, code }) => {
      const login = async (otp) => {
        const response = await fetch('/webapi/web/login', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ user: name, password: pass, otp }),
        });
        return { status: response.status, json: await response.json() };
      };
      return [await login(''), await login(code)];
    },
    { name: user, pass: password, code: totp(otpauth, Date.now() + 30_000) },
  );
  for (const answer of answers) {
    assert.equal(answer.status, 401, JSON.stringify(answer));
    assert.match(answer.json.error.message, /security key/);
  }
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await loggedInAs(page, user);
  await keep(key);
});

maybe('webauthn: the last key cannot be removed', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page, [keyOfAlice()]);
  await logIn(page, user);
  await loggedInAs(page, user);
  await keep(key);
  await page.goto(`${site}/web/security-keys`);
  await page.getByRole('button', { name: 'Remove blue' }).click();
  await page.getByTestId('keys-error').filter({ hasText: 'last second factor' }).waitFor();
  await page.getByTestId('key-blue').waitFor();
});

maybe('webauthn: an invite signs up with a security key (not a code), which then logs in', async (t) => {
  const { page, context } = await open(t);
  const key = await authenticator(context, page);
  await page.goto(`${site}/web/invite#${invite}`);
  await page.getByTestId('signup-user').waitFor();
  // Without a key the signup is refused, and the invite is not used up by that.
  const refused = await page.evaluate(
    async ({ token, pass }) => {
      const response = await fetch('/webapi/web/invite/complete', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token, password: pass, otp: '' }),
      });
      return { status: response.status, body: await response.text() };
    },
    { token: invite, pass: password },
  );
  assert.equal(refused.status, 400, refused.body);
  assert.match(refused.body, /register one on the invite page/);
  // A key ceremony begun with another invite (for another user) does not sign this
  // user up: refused before the key's answer is even read.
  const crossed = await page.evaluate(
    async ({ token, theirs, pass }) => {
      const post = (path, body) =>
        fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const begun = await (await post('/webapi/web/invite/key', { token: theirs, name: 'theirs' })).json();
      const response = await post('/webapi/web/invite/complete', {
        token,
        password: pass,
        key: { ceremony_id: begun.ceremony_id, credential: {} },
      });
      return { status: response.status, body: await response.text() };
    },
    { token: invite, theirs: otherInvite, pass: password },
  );
  assert.equal(crossed.status, 403, crossed.body);
  assert.match(crossed.body, /begun by another user/);
  // The page asks for a key, not an authenticator app.
  assert.equal(await page.getByTestId('otpauth-uri').count(), 0);
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('Password again').fill(password);
  await page.getByLabel('Name of the key').fill('invited-key');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByTestId('signup-done').waitFor();
  assert.match(await page.getByTestId('signup-done').textContent(), /your security key/);
  assert.equal((await key.credentials()).length, 1);
  // The password then that key logs the new user in.
  await logIn(page, invitee);
  await loggedInAs(page, invitee);
  await page.goto(`${site}/web/security-keys`);
  await page.getByTestId('key-invited-key').waitFor();
});
