// The web session API (`/webapi/web/*`, served by the proxy; docs/web.md). Every call goes
// to the page's own origin with the session cookie; every state-changing call carries the
// session's CSRF token, which the server checks.

/** The current web session, as `POST /webapi/web/login` and `GET /webapi/web/session` answer. */
export interface Session {
  user: string;
  roles: string[];
  csrf_token: string;
  idle_timeout_seconds: number;
  expires_unix: number;
  /** The pages the user's roles allow (the server refuses the calls of the others). */
  can?: Capabilities;
}

export interface Capabilities {
  users: boolean;
  roles: boolean;
  tokens: boolean;
  locks: boolean;
  events: boolean;
  recordings: boolean;
}

export interface Node {
  hostname: string;
  uuid: string;
  labels: Record<string, string>;
}

export interface NodePage {
  nodes: Node[];
  next_cursor: string | null;
  total: number;
  logins: string[];
}

export type NodeSort = 'hostname' | '-hostname';

export interface NodeQuery {
  search: string;
  /** `key=value` each. */
  labels: string[];
  sort: NodeSort;
  limit: number;
  cursor: string | null;
}

/** A refusal or failure, with the message to show as the server wrote it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Where in the document sent (a role's YAML) the error is, when the server says. */
    readonly line: number | null = null,
    readonly column: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken: string | null = null;

/** Called whenever the session changes (login, session check, logout). */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  if (method !== 'GET' && method !== 'HEAD' && csrfToken !== null) {
    headers['X-CSRF-Token'] = csrfToken;
  }
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'The proxy cannot be reached. Check your connection and try again.');
  }
  if (response.status === 204) {
    return undefined as T;
  }
  const text = await response.text();
  let parsed: unknown = undefined;
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  if (!response.ok) {
    throw errorFrom(response.status, parsed);
  }
  if (parsed === undefined) {
    throw new ApiError(response.status, 'bad_response', `The proxy sent an unreadable answer (HTTP ${response.status}).`);
  }
  return parsed as T;
}

/** `{"error": {"code", "message"}}`, the web API's error shape; anything else gets a generic message. */
function errorFrom(status: number, body: unknown): ApiError {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const error = (body as { error: unknown }).error;
    if (typeof error === 'object' && error !== null) {
      const { code, message, line, column } = error as { code?: unknown; message?: unknown; line?: unknown; column?: unknown };
      if (typeof message === 'string' && message !== '') {
        return new ApiError(
          status,
          typeof code === 'string' ? code : 'unknown',
          message,
          typeof line === 'number' ? line : null,
          typeof column === 'number' ? column : null,
        );
      }
    }
  }
  return new ApiError(status, 'unknown', `The proxy answered HTTP ${status}.`);
}

/** A single sign-on connector, as /webapi/ping lists it. */
export interface Connector {
  kind: string;
  name: string;
  display: string;
}

/** What the login page needs to know of the cluster's logins. */
export interface LoginOptions {
  auth: { type: string; local_auth: boolean; second_factor: string; passwordless: boolean; connectors: Connector[] };
}

export function loginOptions(): Promise<LoginOptions> {
  return call<LoginOptions>('GET', '/webapi/ping');
}

/** Where a connector's button goes: the proxy starts the login and sends the browser on. */
export function ssoLoginUrl(connector: Connector, landing: string): string {
  const query = new URLSearchParams({ connector_id: connector.name, redirect_url: landing });
  return `/webapi/${encodeURIComponent(connector.kind)}/login/web?${query.toString()}`;
}

export function login(user: string, password: string, otp: string): Promise<Session> {
  return call<Session>('POST', '/webapi/web/login', { user, password, otp });
}

/** The current session, or null when there is none (401). */
export async function currentSession(): Promise<Session | null> {
  try {
    return await call<Session>('GET', '/webapi/web/session');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      return null;
    }
    throw err;
  }
}

export function logout(): Promise<void> {
  return call<void>('DELETE', '/webapi/web/session');
}

export function logoutEverywhere(): Promise<void> {
  return call<void>('POST', '/webapi/web/sessions/logout-all');
}

export function listNodes(query: NodeQuery): Promise<NodePage> {
  const params = new URLSearchParams();
  if (query.search !== '') {
    params.set('search', query.search);
  }
  for (const label of query.labels) {
    params.append('label', label);
  }
  params.set('sort', query.sort);
  params.set('limit', String(query.limit));
  if (query.cursor !== null) {
    params.set('cursor', query.cursor);
  }
  return call<NodePage>('GET', `/webapi/web/nodes?${params.toString()}`);
}

// The recordings and audit pages (`/webapi/web/recordings`, `/webapi/web/events`).

/** One recording, as `GET /webapi/web/recordings` lists it (user, login, node from its header). */
export interface RecordingSummary {
  session_id: string;
  size: number;
  completed: boolean;
  modified_unix_millis: number;
  user?: string;
  login?: string;
  node?: string;
  started_unix?: number;
}

export function listRecordings(): Promise<{ recordings: RecordingSummary[] }> {
  return call('GET', '/webapi/web/recordings');
}

/** Where a recording is, as asciicast; `download` makes the server send it as a file. */
export function recordingUrl(sessionId: string, download = false): string {
  return `/webapi/web/recordings/${encodeURIComponent(sessionId)}.cast${download ? '?download=1' : ''}`;
}

/** A recording's asciicast text (refusals as ApiError, with the server's message). */
export async function fetchRecording(sessionId: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(recordingUrl(sessionId), { credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'The proxy cannot be reached. Check your connection and try again.');
  }
  const text = await response.text();
  if (!response.ok) {
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    throw errorFrom(response.status, parsed);
  }
  return text;
}

/** One audit event as the audit log stores it: a flat object (`event`, `time`, `user`, `sid`, …). */
export type AuditEvent = Record<string, unknown>;

export interface EventQuery {
  /** Unix milliseconds, or null for no bound. */
  from: number | null;
  to: number | null;
  types: string[];
  user: string;
  session: string;
  limit: number;
  cursor: string | null;
}

export function searchEvents(query: EventQuery): Promise<{ events: AuditEvent[]; next_cursor: string | null }> {
  const params = new URLSearchParams();
  if (query.from !== null) {
    params.set('from', String(query.from));
  }
  if (query.to !== null) {
    params.set('to', String(query.to));
  }
  for (const type of query.types) {
    params.append('type', type);
  }
  if (query.user !== '') {
    params.set('user', query.user);
  }
  if (query.session !== '') {
    params.set('session', query.session);
  }
  params.set('limit', String(query.limit));
  if (query.cursor !== null) {
    params.set('cursor', query.cursor);
  }
  return call('GET', `/webapi/web/events?${params.toString()}`);
}

/** The terminal socket's URL (same origin: the proxy checks the Origin it carries). */
export function terminalUrl(node: string, login: string, cols: number, rows: number): string {
  const params = new URLSearchParams({ node, login, cols: String(cols), rows: String(rows) });
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/webapi/web/terminal?${params.toString()}`;
}

/** A session in progress, as `GET /webapi/web/active-sessions` lists it. */
export interface ActiveSession {
  session_id: string;
  user: string;
  login: string;
  node_uuid: string;
  node_hostname: string;
  client_addr: string;
  interactive: boolean;
  started_unix_millis: number;
}

export function listActiveSessions(): Promise<{ sessions: ActiveSession[] }> {
  return call('GET', '/webapi/web/active-sessions');
}
