import { useCallback, useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import * as admin from '../admin-api';
import '../admin.css';

interface Props {
  onSessionEnded: () => void;
}

/**
 * Join tokens: make one for a node or a proxy (shown once, with the config file and the
 * command to run on the new server: the proxy's public address and the CA pin are in it),
 * list them (by id: the tokens are stored hashed), revoke one.
 */
export function TokensPage({ onSessionEnded }: Props) {
  const [tokens, setTokens] = useState<admin.JoinToken[] | null>(null);
  const [made, setMade] = useState<admin.NewJoinToken | null>(null);
  const [role, setRole] = useState('node');
  const [minutes, setMinutes] = useState('30');
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const failed = useCallback(
    (err: unknown) => {
      setBusy(false);
      if (err instanceof api.ApiError && err.status === 401) {
        onSessionEnded();
        return;
      }
      setError(err instanceof api.ApiError ? err.message : String(err));
    },
    [onSessionEnded],
  );

  const load = useCallback(() => {
    admin.listTokens().then((loaded) => setTokens(loaded.tokens), failed);
  }, [failed]);
  useEffect(load, [load]);

  const create = (event: Event) => {
    event.preventDefault();
    const ttl = Math.round(Number(minutes) * 60);
    if (!Number.isFinite(ttl) || ttl < 60) {
      setError('The time to live is in minutes: 1 or more.');
      return;
    }
    setBusy(true);
    setError(null);
    setNotice(null);
    admin.addToken(role, ttl).then((token) => {
      setBusy(false);
      setMade(token);
      load();
    }, failed);
  };

  const revoke = (id: string) => {
    setBusy(true);
    setError(null);
    setNotice(null);
    admin.deleteToken(id).then(() => {
      setBusy(false);
      setNotice(`Token ${id} revoked.`);
      if (made?.id === id) {
        setMade(null);
      }
      load();
    }, failed);
  };

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Join tokens</h1>
      {error !== null && (
        <p role="alert" class="error" data-testid="tokens-error">
          {error}
        </p>
      )}
      {notice !== null && (
        <p role="status" class="notice">
          {notice}
        </p>
      )}
      <section aria-labelledby="new-token">
        <h2 id="new-token">Add a server</h2>
        <form class="filters" onSubmit={create}>
          <div class="field">
            <label for="token-role">Joins as</label>
            <select id="token-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
              <option value="node">node (an SSH server)</option>
              <option value="proxy">proxy</option>
            </select>
          </div>
          <div class="field">
            <label for="token-ttl">Valid for (minutes)</label>
            <input
              id="token-ttl"
              inputMode="numeric"
              pattern="[0-9]+"
              required
              value={minutes}
              onInput={(e) => setMinutes(e.currentTarget.value)}
            />
          </div>
          <button type="submit" disabled={busy}>
            Create token
          </button>
        </form>
      </section>
      {made !== null && (
        <section role="status" class="notice" aria-labelledby="made-token" data-testid="made-token">
          <h2 id="made-token">Token {made.id} for a {made.role}</h2>
          <p>
            Valid until {admin.when(made.expires_unix)}. It is shown only now. On the new server, write this to{' '}
            <code>/etc/jumpgate.yaml</code>:
          </p>
          <pre class="snippet" data-testid="join-config" tabIndex={0}>
            {made.config}
          </pre>
          <p>then run:</p>
          <pre class="snippet" data-testid="join-command" tabIndex={0}>
            {made.command}
          </pre>
        </section>
      )}
      <h2>All tokens</h2>
      {tokens === null ? (
        <p role="status">Loading…</p>
      ) : tokens.length === 0 ? (
        <p>No join tokens.</p>
      ) : (
        <table class="admin">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Joins as</th>
              <th scope="col">Expires</th>
              <th scope="col">Kind</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((token) => (
              <tr key={token.id} data-testid={`token-${token.id}`}>
                <th scope="row">
                  <code>{token.id}</code>
                </th>
                <td data-label="Joins as">{token.roles.join(', ')}</td>
                <td data-label="Expires">{admin.when(token.expires_unix)}</td>
                <td data-label="Kind">
                  {token.kind}
                  {token.single_use ? ', one use' : ''}
                </td>
                <td class="actions">
                  {token.kind !== 'static' && (
                    <button type="button" disabled={busy} onClick={() => revoke(token.id)}>
                      Revoke<span class="visually-hidden"> {token.id}</span>
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
