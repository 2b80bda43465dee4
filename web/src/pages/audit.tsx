// The audit log (docs/web.md): a page of events at a time with the server's cursor,
// filtered by time, type, user and session; each event's JSON as text; session events
// link to their recording. The `event` rule decides what the user may search (the API
// refuses, and the page shows its message).
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api';
import { paths } from '../route';
import { formatTime } from './recordings';
import '../views.css';

const PAGE_SIZES = [10, 50, 100, 500];

/** The event types the audit log writes (crates/audit/src/event.rs). */
const TYPES = [
  'session.start',
  'session.end',
  'exec',
  'scp',
  'sftp',
  'port',
  'auth',
  'user.login',
  'user.create',
  'user.update',
  'user.delete',
  'user.password_change',
  'role.created',
  'role.deleted',
  'join_token.create',
  'join_token.delete',
  'cert.create',
  'instance.join',
  'cert_authority.rotate',
  'lock.created',
  'lock.deleted',
];

interface Props {
  onSessionEnded: () => void;
}

interface Filters {
  from: string;
  to: string;
  type: string;
  user: string;
  session: string;
}

const NO_FILTERS: Filters = { from: '', to: '', type: '', user: '', session: '' };

type Load =
  | { kind: 'loading' }
  | { kind: 'failed'; message: string }
  | { kind: 'loaded'; events: api.AuditEvent[]; next: string | null; page: number };

/** A `datetime-local` value (the browser's time zone) as Unix milliseconds. */
function millis(value: string): number | null {
  if (value === '') {
    return null;
  }
  const time = new Date(value).getTime();
  return Number.isNaN(time) ? null : time;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : JSON.stringify(value);
}

export function AuditPage({ onSessionEnded }: Props) {
  const [form, setForm] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [load, setLoad] = useState<Load>({ kind: 'loading' });
  const [retry, setRetry] = useState(0);
  const [pageSize, setPageSize] = useState(50);
  const cursor = cursors[cursors.length - 1] ?? null;
  const pageNumber = cursors.length;

  useEffect(() => {
    let current = true;
    setLoad({ kind: 'loading' });
    api
      .searchEvents({
        from: millis(filters.from),
        to: millis(filters.to),
        types: filters.type === '' ? [] : [filters.type],
        user: filters.user.trim(),
        session: filters.session.trim(),
        limit: pageSize,
        cursor,
      })
      .then(
        (page) =>
          current && setLoad({ kind: 'loaded', events: page.events, next: page.next_cursor, page: pageNumber }),
        (err: unknown) => {
          if (!current) {
            return;
          }
          if (err instanceof api.ApiError && err.status === 401) {
            onSessionEnded();
            return;
          }
          setLoad({ kind: 'failed', message: err instanceof api.ApiError ? err.message : String(err) });
        },
      );
    return () => {
      current = false;
    };
  }, [filters, cursor, pageSize, retry, onSessionEnded]);

  const apply = (event: Event) => {
    event.preventDefault();
    setFilters(form);
    setCursors([null]);
  };

  const clear = () => {
    setForm(NO_FILTERS);
    setFilters(NO_FILTERS);
    setCursors([null]);
  };

  const set = (key: keyof Filters) => (e: { currentTarget: HTMLInputElement }) =>
    setForm({ ...form, [key]: e.currentTarget.value });
  const input = (key: keyof Filters, label: string) => (
    <div class="field">
      <label for={`audit-${key}`}>{label}</label>
      <input id={`audit-${key}`} type="search" value={form[key]} onInput={set(key)} />
    </div>
  );
  const time = (key: 'from' | 'to', label: string) => (
    <div class="field">
      <label for={`audit-${key}`}>{label}</label>
      <input id={`audit-${key}`} type="datetime-local" step={1} value={form[key]} onInput={set(key)} />
    </div>
  );

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Audit log</h1>
      <form class="filters" role="search" aria-label="Filter events" onSubmit={apply}>
        {time('from', 'From')}
        {time('to', 'To')}
        <div class="field">
          <label for="audit-type">Event type</label>
          <select id="audit-type" value={form.type} onChange={(e) => setForm({ ...form, type: e.currentTarget.value })}>
            <option value="">Any</option>
            {TYPES.map((type) => (
              <option key={type} value={type}>
                {type}
              </option>
            ))}
          </select>
        </div>
        {input('user', 'User')}
        {input('session', 'Session')}
        <div class="field">
          <label for="audit-page-size">Events per page</label>
          <select
            id="audit-page-size"
            value={String(pageSize)}
            onChange={(e) => {
              setPageSize(Number(e.currentTarget.value));
              setCursors([null]);
            }}
          >
            {PAGE_SIZES.map((size) => (
              <option key={size} value={String(size)}>
                {size}
              </option>
            ))}
          </select>
        </div>
        <div class="row actions">
          <button type="submit">Search</button>
          <button type="button" class="secondary" onClick={clear}>
            Clear
          </button>
        </div>
      </form>

      <p role="status" class="count" data-testid="event-count">
        {load.kind === 'loading' && 'Loading events…'}
        {load.kind === 'loaded' &&
          (load.events.length === 0 ? 'No events match.' : `Page ${load.page}: ${load.events.length} event${load.events.length === 1 ? '' : 's'}, newest first`)}
      </p>
      {load.kind === 'failed' && (
        <div role="alert" class="error">
          <p>{load.message}</p>
          <button type="button" onClick={() => setRetry(retry + 1)}>
            Try again
          </button>
        </div>
      )}
      {load.kind === 'loaded' && load.events.length > 0 && (
        <table class="list events">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Event</th>
              <th scope="col">User</th>
              <th scope="col">Session</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {load.events.map((event, index) => (
              <EventRow key={text(event.uid) || index} event={event} />
            ))}
          </tbody>
        </table>
      )}
      {load.kind === 'loaded' && (pageNumber > 1 || load.next !== null) && (
        <nav class="pager" aria-label="Pages of events">
          <button type="button" disabled={pageNumber === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
            Previous page
          </button>
          <span>Page {pageNumber}</span>
          <button
            type="button"
            disabled={load.next === null}
            onClick={() => load.next !== null && setCursors([...cursors, load.next])}
          >
            Next page
          </button>
        </nav>
      )}
    </main>
  );
}

function EventRow({ event }: { event: api.AuditEvent }) {
  const type = text(event.event);
  const sid = text(event.sid);
  const time = Date.parse(text(event.time));
  const failed = event.success === false;
  return (
    <tr data-event={type} data-session={sid || undefined} data-uid={text(event.uid) || undefined}>
      <td data-label="Time">{Number.isNaN(time) ? text(event.time) : formatTime(time)}</td>
      <td data-label="Event">
        {type}
        {failed && <span class="error-text"> (failed)</span>}
      </td>
      <td data-label="User">{text(event.user)}</td>
      <td data-label="Session">
        {sid !== '' && type.startsWith('session.') ? (
          <a href={paths.recording(sid)}>
            <span class="visually-hidden">Recording of session </span>
            {sid}
          </a>
        ) : (
          sid
        )}
      </td>
      <td data-label="Detail">
        <details>
          <summary>
            JSON<span class="visually-hidden"> of this {type} event</span>
          </summary>
          <pre class="json">{JSON.stringify(event, null, 2)}</pre>
        </details>
      </td>
    </tr>
  );
}
