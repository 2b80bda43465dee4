// Sessions in progress (docs/web.md): the ones the user's roles let them list (the API
// decides: their own with `access`, everyone's with `auditor`), with a link to the
// recording being written for a shell.
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import { paths } from '../route';
import { type Load, failure, formatDuration, formatTime } from './recordings';
import '../views.css';

interface Props {
  onSessionEnded: () => void;
}

export function SessionsPage({ onSessionEnded }: Props) {
  const [load, setLoad] = useState<Load<api.ActiveSession[]>>({ kind: 'loading' });
  const [refresh, setRefresh] = useState(0);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    let current = true;
    api.listActiveSessions().then(
      (page) => {
        if (current) {
          setNow(Date.now());
          setLoad({ kind: 'loaded', value: page.sessions });
        }
      },
      (err: unknown) => {
        const failed = current ? failure(err, onSessionEnded) : null;
        if (failed !== null) {
          setLoad(failed);
        }
      },
    );
    return () => {
      current = false;
    };
  }, [refresh, onSessionEnded]);

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Sessions in progress</h1>
      <p>
        <button type="button" onClick={() => setRefresh(refresh + 1)}>
          Refresh
        </button>
      </p>
      <p role="status" class="count" data-testid="session-count">
        {load.kind === 'loading' && 'Loading sessions…'}
        {load.kind === 'loaded' &&
          (load.value.length === 0
            ? 'No sessions in progress that you may see.'
            : `${load.value.length} in progress`)}
      </p>
      {load.kind === 'failed' && (
        <div role="alert" class="error">
          <p>{load.message}</p>
          <button type="button" onClick={() => setRefresh(refresh + 1)}>
            Try again
          </button>
        </div>
      )}
      {load.kind === 'loaded' && load.value.length > 0 && (
        <table class="list sessions">
          <thead>
            <tr>
              <th scope="col">Since</th>
              <th scope="col">User</th>
              <th scope="col">Login@Node</th>
              <th scope="col">Kind</th>
              <th scope="col">From</th>
              <th scope="col">Session</th>
            </tr>
          </thead>
          <tbody>
            {load.value.map((s) => (
              <tr key={s.session_id} data-testid={`active-${s.session_id}`}>
                <td data-label="Since">
                  {formatTime(s.started_unix_millis)} ({formatDuration((now - s.started_unix_millis) / 1000)})
                </td>
                <td data-label="User">{s.user}</td>
                <td data-label="Login@Node">
                  {s.login}@{s.node_hostname}
                </td>
                <td data-label="Kind">{s.interactive ? 'shell' : 'command'}</td>
                <td data-label="From">{s.client_addr}</td>
                <td data-label="Session">
                  {s.interactive ? (
                    <a href={paths.recording(s.session_id)}>
                      <span class="visually-hidden">Recording of </span>
                      {s.session_id}
                    </a>
                  ) : (
                    s.session_id
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
