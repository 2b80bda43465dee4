// Session recordings (docs/web.md): the list the user's roles allow (the API decides),
// and one recording played with asciinema-player, loaded when a recording is opened
// (lazy/player.ts).
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as api from '../api';
import { paths } from '../route';
import type { Player } from '../lazy/player';
import '../views.css';

interface Props {
  onSessionEnded: () => void;
}

export type Load<T> = { kind: 'loading' } | { kind: 'failed'; message: string } | { kind: 'loaded'; value: T };

/** Turns a refusal into the page's message; a 401 ends the session instead. */
export function failure(err: unknown, onSessionEnded: () => void): Load<never> | null {
  if (err instanceof api.ApiError && err.status === 401) {
    onSessionEnded();
    return null;
  }
  return { kind: 'failed', message: err instanceof api.ApiError ? err.message : String(err) };
}

export function formatTime(unixMillis: number): string {
  const date = new Date(unixMillis);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString(undefined, { hour12: false });
}

export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`;
}

function startMillis(recording: api.RecordingSummary): number | null {
  return recording.started_unix === undefined ? null : recording.started_unix * 1000;
}

/** How long the session ran: from its start to the recording's last write. */
function duration(recording: api.RecordingSummary): string {
  const start = startMillis(recording);
  if (start === null) {
    return '';
  }
  const text = formatDuration((recording.modified_unix_millis - start) / 1000);
  return recording.completed ? text : `${text} (running)`;
}

export function RecordingsPage({ onSessionEnded }: Props) {
  const [load, setLoad] = useState<Load<api.RecordingSummary[]>>({ kind: 'loading' });
  const [retry, setRetry] = useState(0);
  const [filters, setFilters] = useState({ user: '', node: '', login: '', session: '' });

  useEffect(() => {
    let current = true;
    setLoad({ kind: 'loading' });
    api.listRecordings().then(
      (page) => current && setLoad({ kind: 'loaded', value: page.recordings }),
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
  }, [retry, onSessionEnded]);

  const shown = useMemo(() => {
    if (load.kind !== 'loaded') {
      return [];
    }
    const has = (value: string | undefined, wanted: string) =>
      wanted.trim() === '' || (value ?? '').toLowerCase().includes(wanted.trim().toLowerCase());
    // Newest session first (the API orders by last write, so a long session would sit
    // above later short ones).
    const started = (r: api.RecordingSummary) => startMillis(r) ?? r.modified_unix_millis;
    return load.value
      .filter(
        (r) =>
          has(r.user, filters.user) &&
          has(r.node, filters.node) &&
          has(r.login, filters.login) &&
          has(r.session_id, filters.session),
      )
      .sort((a, b) => started(b) - started(a));
  }, [load, filters]);

  const field = (key: keyof typeof filters, label: string) => (
    <div class="field">
      <label for={`rec-${key}`}>{label}</label>
      <input
        id={`rec-${key}`}
        type="search"
        value={filters[key]}
        onInput={(e) => setFilters({ ...filters, [key]: e.currentTarget.value })}
      />
    </div>
  );

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Recordings</h1>
      <form class="filters" role="search" aria-label="Filter recordings" onSubmit={(e) => e.preventDefault()}>
        {field('user', 'User')}
        {field('node', 'Node')}
        {field('login', 'Login')}
        {field('session', 'Session')}
      </form>
      <p role="status" class="count" data-testid="recording-count">
        {load.kind === 'loading' && 'Loading recordings…'}
        {load.kind === 'loaded' &&
          (load.value.length === 0
            ? 'No recordings you may see.'
            : `${shown.length} of ${load.value.length} recordings`)}
      </p>
      {load.kind === 'failed' && (
        <div role="alert" class="error">
          <p>{load.message}</p>
          <button type="button" onClick={() => setRetry(retry + 1)}>
            Try again
          </button>
        </div>
      )}
      {shown.length > 0 && (
        <table class="list recordings">
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">User</th>
              <th scope="col">Node</th>
              <th scope="col">Login</th>
              <th scope="col">Duration</th>
              <th scope="col">Session</th>
              <th scope="col">Download</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => {
              const start = startMillis(r);
              return (
                <tr key={r.session_id} data-session={r.session_id} data-start={start ?? undefined}>
                  <td data-label="Started">{start === null ? '' : formatTime(start)}</td>
                  <td data-label="User">{r.user ?? ''}</td>
                  <td data-label="Node">{r.node ?? ''}</td>
                  <td data-label="Login">{r.login ?? ''}</td>
                  <td data-label="Duration">{duration(r)}</td>
                  <td data-label="Session">
                    <a href={paths.recording(r.session_id)}>
                      <span class="visually-hidden">Play </span>
                      {r.session_id}
                    </a>
                  </td>
                  <td data-label="Download">
                    <a href={api.recordingUrl(r.session_id, true)} download={`${r.session_id}.cast`}>
                      .cast<span class="visually-hidden"> file of {r.session_id}</span>
                    </a>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </main>
  );
}

const SPEEDS = [0.5, 1, 2, 4, 8];

/**
 * One recording, played in the page: the player's own controls (play and pause, its bar and
 * arrow keys to seek), a speed, 5 s steps, download.
 */
export function PlayerPage({ id, onSessionEnded }: Props & { id: string }) {
  const [load, setLoad] = useState<Load<string>>({ kind: 'loading' });
  const [speed, setSpeed] = useState(1);
  const [time, setTime] = useState<{ at: number; of: number | undefined }>({ at: 0, of: undefined });
  const host = useRef<HTMLDivElement>(null);
  const player = useRef<Player | null>(null);

  useEffect(() => {
    let current = true;
    setLoad({ kind: 'loading' });
    api.fetchRecording(id).then(
      (cast) => current && setLoad({ kind: 'loaded', value: cast }),
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
  }, [id, onSessionEnded]);

  // The player is made again for a new speed (it takes speed only when made), from
  // where it was, playing if it was.
  useEffect(() => {
    if (load.kind !== 'loaded' || host.current === null) {
      return;
    }
    let gone = false;
    const element = host.current;
    const from = player.current?.getCurrentTime() ?? 0;
    const wasPlaying = element.dataset.playing === 'true';
    player.current?.dispose();
    player.current = null;
    import('../lazy/player').then(
      ({ create }) => {
        if (gone) {
          return;
        }
        const made = create({ data: load.value }, element, {
          speed,
          autoPlay: wasPlaying,
          preload: true,
          fit: 'width',
          idleTimeLimit: 2,
          terminalFontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
        });
        made.addEventListener('play', () => (element.dataset.playing = 'true'));
        made.addEventListener('pause', () => (element.dataset.playing = 'false'));
        made.addEventListener('ended', () => (element.dataset.playing = 'false'));
        if (from > 0) {
          void made.seek(from);
        }
        player.current = made;
      },
      (err: unknown) => !gone && setLoad({ kind: 'failed', message: `The player could not load: ${String(err)}` }),
    );
    return () => {
      gone = true;
    };
  }, [load, speed]);

  useEffect(() => () => player.current?.dispose(), []);

  // The position, for the page's own controls and for screen readers.
  useEffect(() => {
    const timer = setInterval(() => {
      const p = player.current;
      if (p !== null) {
        setTime({ at: p.getCurrentTime(), of: p.getDuration() });
      }
    }, 250);
    return () => clearInterval(timer);
  }, []);

  const seekBy = (seconds: number) => {
    const p = player.current;
    if (p !== null) {
      void p.seek(Math.max(0, p.getCurrentTime() + seconds));
    }
  };

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Recording {id}</h1>
      <p>
        <a href={paths.recordings}>All recordings</a>
      </p>
      {load.kind === 'loading' && <p role="status">Loading the recording…</p>}
      {load.kind === 'failed' && (
        <p role="alert" class="error">
          {load.message}
        </p>
      )}
      {load.kind === 'loaded' && (
        <>
          <div class="player-bar">
            <div class="field">
              <label for="player-speed">Speed</label>
              <select id="player-speed" value={String(speed)} onChange={(e) => setSpeed(Number(e.currentTarget.value))}>
                {SPEEDS.map((s) => (
                  <option key={s} value={String(s)}>
                    {s}×
                  </option>
                ))}
              </select>
            </div>
            <button type="button" class="secondary" onClick={() => seekBy(-5)}>
              Back 5 s
            </button>
            <button type="button" class="secondary" onClick={() => seekBy(5)}>
              Forward 5 s
            </button>
            <span role="status" data-testid="player-time">
              {formatDuration(time.at)}
              {time.of !== undefined && ` of ${formatDuration(time.of)}`}
            </span>
            <a href={api.recordingUrl(id, true)} download={`${id}.cast`}>
              Download (.cast)
            </a>
          </div>
          <div class="player" ref={host} data-speed={String(speed)} />
        </>
      )}
    </main>
  );
}
