import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';

/** Security keys in this cluster (`/webapi/ping`'s second_factor) and this browser. */
function keysAllowed(options: api.LoginOptions | null): boolean {
  return ['webauthn', 'on', 'optional'].includes(options?.auth.second_factor ?? '') && window.PublicKeyCredential !== undefined;
}

interface Props {
  /** Why the user is here again (session expired, logged out), shown above the form. */
  notice: string | null;
  onLoggedIn: (session: api.Session) => void;
}

/**
 * A button per single sign-on connector, then user, password and one-time code (unless
 * the cluster takes SSO only); a refusal shows the server's own message.
 */
export function LoginPage({ notice, onLoggedIn }: Props) {
  const [options, setOptions] = useState<api.LoginOptions | null>(null);
  useEffect(() => {
    api.loginOptions().then(setOptions, () => setOptions(null));
  }, []);
  const connectors = options?.auth.connectors ?? [];
  const localAuth = options?.auth.local_auth ?? true;
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [otp, setOtp] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const keys = keysAllowed(options);

  const attempt = (login: Promise<api.Session>) => {
    setBusy(true);
    setError(null);
    login.then(
      (session) => {
        setPassword('');
        onLoggedIn(session);
      },
      (err: unknown) => {
        setBusy(false);
        setPassword('');
        setOtp('');
        setError(err instanceof api.ApiError ? err.message : String(err));
      },
    );
  };
  const submit = (event: Event) => {
    event.preventDefault();
    const [name, code] = [user.trim(), otp.trim()];
    // Without a code, the user's security key if they have one (the password first).
    const withKey = async () => (await (await import('../webauthn')).keyLogin(name, password)) ?? api.login(name, password, '');
    attempt(keys && code === '' ? withKey() : api.login(name, password, code));
  };
  const passkey = () => attempt(import('../webauthn').then((w) => w.passkeyLogin()));

  return (
    <main id="main" class="page narrow">
      <h1 tabIndex={-1}>Log in to Jumpgate</h1>
      {notice !== null && error === null && (
        <p role="status" class="notice" data-testid="notice">
          {notice}
        </p>
      )}
      {connectors.length > 0 && (
        <nav class="stack sso" aria-label="Single sign-on">
          {connectors.map((connector) => (
            <a
              class="button"
              data-testid={`sso-${connector.name}`}
              href={api.ssoLoginUrl(connector, '/web')}
            >
              Log in with {connector.display}
            </a>
          ))}
        </nav>
      )}
      {localAuth && (
        <form class="stack" onSubmit={submit} aria-describedby={error !== null ? 'login-error' : undefined}>
          <label for="login-user">User name</label>
          <input
            id="login-user"
            name="user"
            autoComplete="username"
            autoCapitalize="none"
            spellcheck={false}
            required
            autoFocus
            value={user}
            onInput={(e) => setUser(e.currentTarget.value)}
          />
          <label for="login-password">Password</label>
          <input
            id="login-password"
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <label for="login-otp">One-time code</label>
          <input
            id="login-otp"
            name="otp"
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9]*"
            maxLength={10}
            aria-describedby="login-otp-hint"
            value={otp}
            onInput={(e) => setOtp(e.currentTarget.value)}
          />
          <p id="login-otp-hint" class="hint">
            The 6-digit code from your authenticator app{keys && ', or leave it empty to use your security key'}.
          </p>
          {error !== null && (
            <p id="login-error" role="alert" class="error" data-testid="login-error">
              {error}
            </p>
          )}
          <button type="submit" disabled={busy}>
            {busy ? 'Logging in…' : 'Log in'}
          </button>
        </form>
      )}
      {keys && localAuth && options?.auth.passwordless === true && (
        <button type="button" class="passkey" disabled={busy} onClick={passkey}>
          Sign in with a passkey
        </button>
      )}
    </main>
  );
}
