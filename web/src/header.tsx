import { useState } from 'preact/hooks';
import * as api from './api';
import { paths } from './route';

interface Props {
  session: api.Session;
  onLoggedOut: (notice: string) => void;
  onSessionEnded: () => void;
}

/** The cluster's name of the app, the pages, who is logged in, and the two ways out. */
export function Header({ session, onLoggedOut, onSessionEnded }: Props) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const leave = (everywhere: boolean) => {
    setBusy(true);
    setError(null);
    (everywhere ? api.logoutEverywhere() : api.logout()).then(
      () => onLoggedOut(everywhere ? 'You are logged out on every device.' : 'You are logged out.'),
      (err: unknown) => {
        setBusy(false);
        if (err instanceof api.ApiError && err.status === 401) {
          onSessionEnded();
          return;
        }
        setError(err instanceof api.ApiError ? err.message : String(err));
      },
    );
  };

  return (
    <header class="top">
      <a class="brand" href={paths.resources}>
        Jumpgate
      </a>
      <nav aria-label="Pages">
        <a href={paths.resources}>Resources</a>
        {session.can?.recordings === true && <a href={paths.recordings}>Recordings</a>}
        {session.can?.recordings === true && <a href={paths.sessions}>Sessions</a>}
        {session.can?.events === true && <a href={paths.audit}>Audit log</a>}
        {session.can?.users === true && <a href={paths.users}>Users</a>}
        {session.can?.roles === true && <a href={paths.roles}>Roles</a>}
        {session.can?.tokens === true && <a href={paths.tokens}>Join tokens</a>}
        <a href={paths.keys}>Security keys</a>
      </nav>
      <div class="who">
        <span>
          Logged in as <strong data-testid="user">{session.user}</strong>
        </span>
        <button type="button" disabled={busy} onClick={() => leave(false)}>
          Log out
        </button>
        <button type="button" disabled={busy} onClick={() => leave(true)}>
          Log out everywhere
        </button>
      </div>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </header>
  );
}
