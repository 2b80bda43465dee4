import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import * as admin from '../admin-api';
import '../admin.css';
import { QrCode } from '../components/qr';
import { paths } from '../route';
import { inviteKey } from '../webauthn';

type State =
  | { kind: 'reading' }
  | { kind: 'refused'; message: string }
  | { kind: 'form'; token: string; invite: admin.InviteInfo }
  | { kind: 'done'; user: string; withKey: boolean };

const MIN_PASSWORD = 12;

/**
 * The invite link's page (`/web/invite#TOKEN`): set a password, enrol TOTP from the QR code
 * (or the otpauth URI as text) and confirm with a code from the app, or register a
 * security key (`second_factor: webauthn`; a choice under `on` and `optional`). The token is read from
 * the fragment, which the browser never sends to the server, and at once removed from the
 * address bar and the history.
 */
export function SignupPage() {
  const [state, setState] = useState<State>({ kind: 'reading' });
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [otp, setOtp] = useState('');
  const [useKey, setUseKey] = useState(false);
  const [keyName, setKeyName] = useState('security key');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const read = () => {
      const token = location.hash.replace(/^#/, '').trim();
      history.replaceState(null, '', paths.invite);
      setError(null);
      if (!/^[0-9a-fA-F]{64}$/.test(token)) {
        setState({
          kind: 'refused',
          message:
            'This invite link is incomplete: open the whole link your admin sent (it ends with # and 64 letters and digits), or ask for a new invite.',
        });
        return;
      }
      setState({ kind: 'reading' });
      admin.readInvite(token).then(
        (invite) => setState({ kind: 'form', token, invite }),
        (err: unknown) => setState({ kind: 'refused', message: err instanceof api.ApiError ? err.message : String(err) }),
      );
    };
    read();
    // A link opened in a tab already at /web/invite changes only the fragment.
    window.addEventListener('hashchange', read);
    return () => window.removeEventListener('hashchange', read);
  }, []);

  useEffect(() => {
    document.querySelector<HTMLElement>('main h1')?.focus();
  }, [state.kind]);

  if (state.kind === 'reading') {
    return (
      <main id="main" class="page narrow">
        <p role="status">Reading the invite…</p>
      </main>
    );
  }
  if (state.kind === 'refused') {
    return (
      <main id="main" class="page narrow">
        <h1 tabIndex={-1}>This invite cannot be used</h1>
        <p role="alert" class="error" data-testid="signup-error">
          {state.message}
        </p>
        <p>
          <a href={paths.login}>Go to the login page</a>
        </p>
      </main>
    );
  }
  if (state.kind === 'done') {
    return (
      <main id="main" class="page narrow">
        <h1 tabIndex={-1}>Your account is ready</h1>
        <p role="status" data-testid="signup-done">
          You are signed up as <strong>{state.user}</strong>.{' '}
          {state.withKey
            ? 'Log in with your password and your security key.'
            : 'Log in with your password and a new code from your authenticator app: the code you just entered cannot be used again.'}
        </p>
        <p>
          <a href={paths.login}>Log in</a>
        </p>
      </main>
    );
  }

  const { token, invite } = state;
  // A key is required under webauthn, one choice of two under on and optional.
  const keyOnly = invite.second_factor === 'webauthn';
  const keyOrCode = invite.second_factor === 'on' || invite.second_factor === 'optional';
  const withKey = keyOnly || (keyOrCode && useKey);
  const withOtp = invite.otpauth_uri !== '' && !withKey;
  const submit = (event: Event) => {
    event.preventDefault();
    setError(null);
    if (password.length < MIN_PASSWORD) {
      setError(`The password must be at least ${MIN_PASSWORD} characters.`);
      return;
    }
    if (password !== confirm) {
      setError('The two passwords differ: type the same password twice.');
      return;
    }
    setBusy(true);
    const key = withKey ? inviteKey(token, keyName.trim()) : Promise.resolve(undefined);
    key.then((registered) => admin.completeInvite(token, password, withKey ? '' : otp.trim(), registered)).then(
      (done) => {
        setPassword('');
        setConfirm('');
        setState({ kind: 'done', user: done.user, withKey });
      },
      (err: unknown) => {
        setBusy(false);
        setOtp('');
        setError(err instanceof api.ApiError ? err.message : String(err));
      },
    );
  };

  return (
    <main id="main" class="page narrow">
      <h1 tabIndex={-1}>Sign up to Jumpgate</h1>
      <p>
        Welcome, <strong data-testid="signup-user">{invite.user}</strong>. This invite expires{' '}
        {admin.when(invite.expires_unix)}.
      </p>
      <form class="stack" onSubmit={submit}>
        <input type="text" name="username" autoComplete="username" value={invite.user} hidden readOnly />
        <label for="signup-password">New password</label>
        <input
          id="signup-password"
          type="password"
          autoComplete="new-password"
          required
          minLength={MIN_PASSWORD}
          aria-describedby="signup-password-hint"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <p id="signup-password-hint" class="hint">
          At least {MIN_PASSWORD} characters.
        </p>
        <label for="signup-confirm">Password again</label>
        <input
          id="signup-confirm"
          type="password"
          autoComplete="new-password"
          required
          value={confirm}
          onInput={(e) => setConfirm(e.currentTarget.value)}
        />
        {keyOrCode && (
          <fieldset class="choice">
            <legend>Second factor</legend>
            <label>
              <input type="radio" name="factor" checked={!useKey} onChange={() => setUseKey(false)} /> Authenticator app
            </label>
            <label>
              <input
                type="radio"
                name="factor"
                data-testid="signup-use-key"
                checked={useKey}
                onChange={() => setUseKey(true)}
              />{' '}
              Security key
            </label>
          </fieldset>
        )}
        {withKey && (
          <>
            <h2>Register your security key</h2>
            <p>
              {keyOnly ? 'This cluster asks for a security key at every login. ' : ''}When you sign up, your browser asks
              you to use your key. To sign in with a passkey alone, add one on the Security keys page once you are in.
            </p>
            <label for="signup-key-name">Name of the key</label>
            <input
              id="signup-key-name"
              required
              maxLength={64}
              value={keyName}
              onInput={(e) => setKeyName(e.currentTarget.value)}
            />
          </>
        )}
        {withOtp && (
          <>
            <h2>Enrol your authenticator app</h2>
            <p>Scan this code with your authenticator app (or enter the URI below in it).</p>
            <QrCode text={invite.otpauth_uri} label={`QR code to enrol ${invite.user} in an authenticator app`} />
            <details>
              <summary>Can't scan? Show the URI</summary>
              <code data-testid="otpauth-uri">{invite.otpauth_uri}</code>
            </details>
            <label for="signup-otp">Code from the app</label>
            <input
              id="signup-otp"
              inputMode="numeric"
              autoComplete="one-time-code"
              pattern="[0-9]*"
              maxLength={10}
              required
              aria-describedby="signup-otp-hint"
              value={otp}
              onInput={(e) => setOtp(e.currentTarget.value)}
            />
            <p id="signup-otp-hint" class="hint">
              The 6-digit code the app shows now: it confirms the app is enrolled.
            </p>
          </>
        )}
        {error !== null && (
          <p role="alert" class="error" data-testid="signup-error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing up…' : 'Sign up'}
        </button>
      </form>
    </main>
  );
}
