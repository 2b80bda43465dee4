import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';

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

  const submit = (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    api.login(user.trim(), password, otp.trim()).then(
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
            The 6-digit code from your authenticator app.
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
    </main>
  );
}
