import { useCallback, useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import * as keys from '../webauthn';
import '../admin.css';

interface Props {
  onSessionEnded: () => void;
}

const when = (unix: number | null) => (unix === null ? 'never' : new Date(unix * 1000).toLocaleString());

/**
 * The user's own security keys and passkeys: register one (a name, the password again,
 * then the key), list them, remove one (the server refuses the last second factor the
 * cluster requires, and says so).
 */
export function SecurityKeysPage({ onSessionEnded }: Props) {
  const [list, setList] = useState<keys.Devices | null>(null);
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [passwordless, setPasswordless] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const failed = useCallback(
    (err: unknown) => {
      setBusy(false);
      if (err instanceof api.ApiError && err.status === 401 && err.code !== 'webauthn') {
        onSessionEnded();
        return;
      }
      setError(err instanceof api.ApiError ? err.message : String(err));
    },
    [onSessionEnded],
  );
  const load = useCallback(() => {
    keys.listDevices().then(setList, failed);
  }, [failed]);
  useEffect(load, [load]);

  const register = (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    const wanted = name.trim();
    keys.registerDevice(password, wanted, passwordless && list?.passwordless_enabled === true).then((device) => {
      setBusy(false);
      setPassword('');
      setName('');
      setNotice(`Security key ${device.name} registered.`);
      load();
    }, (err: unknown) => {
      setPassword('');
      failed(err);
    });
  };

  const remove = (device: string) => {
    setBusy(true);
    setError(null);
    setNotice(null);
    keys.removeDevice(device).then(() => {
      setBusy(false);
      setNotice(`Security key ${device} removed.`);
      load();
    }, failed);
  };

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Security keys</h1>
      {error !== null && (
        <p role="alert" class="error" data-testid="keys-error">
          {error}
        </p>
      )}
      {notice !== null && (
        <p role="status" class="notice" data-testid="keys-notice">
          {notice}
        </p>
      )}
      {list !== null && !list.webauthn_enabled && (
        <p role="status">Security keys are off in this cluster (second factor: {list.second_factor}).</p>
      )}
      {list?.webauthn_enabled === true && (
        <section aria-labelledby="new-key">
          <h2 id="new-key">Register a security key</h2>
          <form class="filters" onSubmit={register}>
            <div class="field">
              <label for="key-name">Name</label>
              <input id="key-name" required maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </div>
            <div class="field">
              <label for="key-password">Your password</label>
              <input
                id="key-password"
                type="password"
                autoComplete="current-password"
                required
                value={password}
                onInput={(e) => setPassword(e.currentTarget.value)}
              />
            </div>
            {list.passwordless_enabled && (
              <div class="field">
                <label class="check">
                  <input type="checkbox" checked={passwordless} onChange={(e) => setPasswordless(e.currentTarget.checked)} /> Also
                  a passkey (sign in without a password)
                </label>
              </div>
            )}
            <button type="submit" disabled={busy}>
              Register key
            </button>
          </form>
        </section>
      )}
      <h2>Your keys</h2>
      {list === null ? (
        <p role="status">Loading…</p>
      ) : list.devices.length === 0 ? (
        <p data-testid="no-keys">No security keys.</p>
      ) : (
        <table class="admin">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Passkey</th>
              <th scope="col">Added</th>
              <th scope="col">Last used</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.devices.map((device) => (
              <tr key={device.id} data-testid={`key-${device.name}`}>
                <th scope="row">{device.name}</th>
                <td data-label="Passkey">{device.passwordless ? 'yes' : 'no'}</td>
                <td data-label="Added">{when(device.added_unix)}</td>
                <td data-label="Last used">{when(device.last_used_unix)}</td>
                <td class="actions">
                  <button type="button" disabled={busy} onClick={() => remove(device.name)}>
                    Remove<span class="visually-hidden"> {device.name}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
