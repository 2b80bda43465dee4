import { useCallback, useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import * as admin from '../admin-api';
import '../admin.css';

interface Props {
  session: api.Session;
  onSessionEnded: () => void;
}

const list = (text: string) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');

/** The result of the last action: an invite link to hand over, or what happened. */
type Outcome = { kind: 'invite'; invite: admin.Invite; reset: boolean } | { kind: 'done'; message: string };

/**
 * Users: add (→ an invite link), reset (→ a new invite link), lock with a message, unlock
 * (the locks and a lockout after failed logins), delete. Every action runs as the logged-in
 * user: the server refuses what their roles do not allow, and the message is shown as is.
 */
export function UsersPage({ session, onSessionEnded }: Props) {
  const [page, setPage] = useState<admin.UsersPage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState(false);
  const [name, setName] = useState('');
  const [roles, setRoles] = useState('access');
  const [logins, setLogins] = useState('');
  const [lockTarget, setLockTarget] = useState('');
  const [lockMessage, setLockMessage] = useState('');
  const [deleting, setDeleting] = useState<string | null>(null);

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
    admin.listUsers().then((loaded) => {
      setPage(loaded);
      setBusy(false);
    }, failed);
  }, [failed]);

  useEffect(load, [load]);

  /** Runs an action, then shows its outcome and the list as it is now. */
  const act = <T,>(action: Promise<T>, show: (result: T) => Outcome) => {
    setBusy(true);
    setError(null);
    setOutcome(null);
    action.then((result) => {
      setOutcome(show(result));
      load();
    }, failed);
  };

  const add = (event: Event) => {
    event.preventDefault();
    act(admin.addUser(name.trim(), list(roles), list(logins)), (invite) => {
      setName('');
      setLogins('');
      return { kind: 'invite', invite, reset: false };
    });
  };

  const lock = (event: Event) => {
    event.preventDefault();
    act(admin.lockUser(lockTarget, lockMessage.trim()), () => {
      setLockMessage('');
      return { kind: 'done', message: `${lockTarget} is locked.` };
    });
  };

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Users</h1>
      {error !== null && (
        <p role="alert" class="error" data-testid="users-error">
          {error}
        </p>
      )}
      {outcome?.kind === 'done' && (
        <p role="status" class="notice" data-testid="users-notice">
          {outcome.message}
        </p>
      )}
      {outcome?.kind === 'invite' && (
        <div role="status" class="notice" data-testid="invite">
          <p>
            {outcome.reset ? 'New invite for ' : 'Invite for '}
            <strong>{outcome.invite.user}</strong> (valid until {admin.when(outcome.invite.expires_unix)}, one use).
            Send them this link: they set a password and enrol their authenticator app there.
          </p>
          <code class="block" data-testid="invite-url">{outcome.invite.invite_url}</code>
        </div>
      )}

      <section aria-labelledby="add-user">
        <h2 id="add-user">Add a user</h2>
        <form class="filters" onSubmit={add}>
          <div class="field">
            <label for="user-name">User name</label>
            <input
              id="user-name"
              required
              autoCapitalize="none"
              spellcheck={false}
              value={name}
              onInput={(e) => setName(e.currentTarget.value)}
            />
          </div>
          <div class="field">
            <label for="user-roles">Roles (comma-separated)</label>
            <input id="user-roles" required value={roles} onInput={(e) => setRoles(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for="user-logins">Logins (comma-separated)</label>
            <input id="user-logins" value={logins} onInput={(e) => setLogins(e.currentTarget.value)} />
          </div>
          <button type="submit" disabled={busy}>
            Add user
          </button>
        </form>
      </section>

      <section aria-labelledby="lock-user">
        <h2 id="lock-user">Lock a user</h2>
        <form class="filters" onSubmit={lock}>
          <div class="field">
            <label for="lock-target">User</label>
            <select id="lock-target" required value={lockTarget} onChange={(e) => setLockTarget(e.currentTarget.value)}>
              <option value="">Choose…</option>
              {page?.users
                .filter((user) => user.name !== session.user)
                .map((user) => (
                  <option key={user.name} value={user.name}>
                    {user.name}
                  </option>
                ))}
            </select>
          </div>
          <div class="field">
            <label for="lock-message">Message shown to them</label>
            <input id="lock-message" value={lockMessage} onInput={(e) => setLockMessage(e.currentTarget.value)} />
          </div>
          <button type="submit" disabled={busy}>
            Lock
          </button>
        </form>
      </section>

      <h2>All users</h2>
      {page === null ? (
        <p role="status">Loading…</p>
      ) : (
        <table class="admin">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Roles</th>
              <th scope="col">Logins</th>
              <th scope="col">Status</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {page.users.map((user) => {
              const locked = user.locks.length > 0;
              const lockedOut = user.locked_out_until_unix !== null;
              return (
                <tr key={user.name} data-testid={`user-${user.name}`}>
                  <th scope="row">{user.name}</th>
                  <td data-label="Roles">{user.roles.join(', ')}</td>
                  <td data-label="Logins">{user.logins.join(', ')}</td>
                  <td data-label="Status">
                    {locked && <span>Locked: {user.locks.map((l) => l.message || 'no message').join('; ')}</span>}
                    {lockedOut && <span>Locked out until {admin.when(user.locked_out_until_unix)}</span>}
                    {!locked && !lockedOut && <span>Active</span>}
                  </td>
                  <td class="actions">
                    <button
                      type="button"
                      disabled={busy}
                      onClick={() =>
                        act(admin.resetUser(user.name), (invite) => ({ kind: 'invite', invite, reset: true }))
                      }
                    >
                      Reset<span class="visually-hidden"> {user.name}</span>
                    </button>
                    {(locked || lockedOut) && (
                      <button
                        type="button"
                        disabled={busy}
                        onClick={() =>
                          act(admin.unlockUser(user.name), () => ({ kind: 'done', message: `${user.name} is unlocked.` }))
                        }
                      >
                        Unlock<span class="visually-hidden"> {user.name}</span>
                      </button>
                    )}
                    {user.name !== session.user &&
                      (deleting === user.name ? (
                        <>
                          <button
                            type="button"
                            class="danger"
                            disabled={busy}
                            onClick={() => {
                              setDeleting(null);
                              act(admin.deleteUser(user.name), () => ({ kind: 'done', message: `${user.name} is deleted.` }));
                            }}
                          >
                            Confirm delete<span class="visually-hidden"> {user.name}</span>
                          </button>
                          <button type="button" onClick={() => setDeleting(null)}>
                            Cancel
                          </button>
                        </>
                      ) : (
                        <button type="button" disabled={busy} onClick={() => setDeleting(user.name)}>
                          Delete<span class="visually-hidden"> {user.name}</span>
                        </button>
                      ))}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {page !== null && !page.locks_listed && (
        <p class="hint">Your roles do not let you list locks: locks are not shown.</p>
      )}
    </main>
  );
}
