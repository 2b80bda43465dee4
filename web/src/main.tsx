// The Jumpgate web UI (docs/web.md). One page at a time, chosen from the URL (route.ts),
// under one web session (api.ts). Every string from the server is rendered as text by
// Preact's JSX; no HTML is ever built from strings (test.sh checks).
import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import * as api from './api';
import { Header } from './header';
import { LoginPage } from './pages/login';
import { ResourcesPage } from './pages/resources';
import { TerminalPage } from './pages/terminal';
import { PlayerPage, RecordingsPage } from './pages/recordings';
import { AuditPage } from './pages/audit';
import { SessionsPage } from './pages/sessions';
import { NotFoundPage } from './pages/not-found';
import { ForbiddenPage } from './pages/forbidden';
import { lazyPage } from './lazy';
import { navigate, onLinkClick, paths, useRoute } from './route';
import './style.css';

type SessionState =
  | { kind: 'checking' }
  | { kind: 'unreachable'; message: string }
  | { kind: 'none'; notice: string | null }
  | { kind: 'active'; session: api.Session };

/**
 * Whether this browser had a session that was not logged out: a reload after the session
 * timed out says so instead of showing a bare login form. Not a secret (the session itself
 * is an HttpOnly cookie the page never sees).
 */
const hadSession = {
  key: 'jumpgate.had-session',
  get(): boolean {
    try {
      return localStorage.getItem(this.key) === '1';
    } catch {
      return false;
    }
  },
  set(had: boolean): void {
    try {
      if (had) {
        localStorage.setItem(this.key, '1');
      } else {
        localStorage.removeItem(this.key);
      }
    } catch {
      // Storage refused (private mode): only the notice is lost.
    }
  },
};

const EXPIRED = 'Your session expired. Log in again to continue.';

// Pages only admins or new users open: loaded when first shown.
const UsersPage = lazyPage(() => import('./pages/users').then((m) => m.UsersPage));
const RolesPage = lazyPage(() => import('./pages/roles').then((m) => m.RolesPage));
const TokensPage = lazyPage(() => import('./pages/tokens').then((m) => m.TokensPage));
const SignupPage = lazyPage(() => import('./pages/signup').then((m) => m.SignupPage));
const SecurityKeysPage = lazyPage(() => import('./pages/keys').then((m) => m.SecurityKeysPage));

/** Where to go after logging in: only a page of this app, never another origin. */
function afterLogin(next: string | null): string {
  if (next !== null && next.startsWith('/web/') && !next.startsWith('/web/login') && !next.startsWith('//')) {
    return next;
  }
  return paths.resources;
}

function App() {
  const route = useRoute();
  const [state, setState] = useState<SessionState>({ kind: 'checking' });
  const [next, setNext] = useState<string | null>(null);

  const check = useCallback(() => {
    setState({ kind: 'checking' });
    api.currentSession().then(
      (session) => {
        api.setCsrfToken(session?.csrf_token ?? null);
        if (session === null) {
          setState({ kind: 'none', notice: hadSession.get() ? EXPIRED : null });
          hadSession.set(false);
        } else {
          hadSession.set(true);
          setState({ kind: 'active', session });
        }
      },
      (err: unknown) => {
        const message = err instanceof api.ApiError ? err.message : String(err);
        setState({ kind: 'unreachable', message });
      },
    );
  }, []);

  useEffect(check, [check]);

  // Pages need a session, the login page needs none: send the browser where it belongs.
  // The invite link's signup page is for people without an account: no session needed.
  useEffect(() => {
    if (state.kind === 'none' && route.page !== 'login' && route.page !== 'invite') {
      setNext(location.pathname + location.search);
      navigate(paths.login, true);
    } else if (state.kind === 'active' && route.page === 'login') {
      navigate(afterLogin(next), true);
    }
  }, [state, route, next]);

  // Keyboard and screen-reader users land on the new page's heading.
  useEffect(() => {
    document.querySelector<HTMLElement>('main h1')?.focus({ preventScroll: false });
  }, [route.page]);

  const loggedIn = (session: api.Session) => {
    api.setCsrfToken(session.csrf_token);
    hadSession.set(true);
    setState({ kind: 'active', session });
  };

  /** A call answered 401: the session is gone (idle timeout, expiry, logout elsewhere). */
  const sessionEnded = useCallback(() => {
    api.setCsrfToken(null);
    hadSession.set(false);
    setState({ kind: 'none', notice: EXPIRED });
  }, []);

  const loggedOut = (notice: string) => {
    api.setCsrfToken(null);
    hadSession.set(false);
    setNext(null);
    setState({ kind: 'none', notice });
  };

  if (route.page === 'invite') {
    return <SignupPage />;
  }
  if (state.kind === 'checking') {
    return (
      <main id="main" class="page narrow">
        <p role="status">Loading…</p>
      </main>
    );
  }
  if (state.kind === 'unreachable') {
    return (
      <main id="main" class="page narrow">
        <h1 tabIndex={-1}>Jumpgate is unreachable</h1>
        <p role="alert" class="error">{state.message}</p>
        <button type="button" onClick={check}>
          Try again
        </button>
      </main>
    );
  }
  if (state.kind === 'none') {
    return <LoginPage notice={state.notice} onLoggedIn={loggedIn} />;
  }

  const { session } = state;
  let page;
  switch (route.page) {
    case 'login':
    case 'resources':
      page = <ResourcesPage onSessionEnded={sessionEnded} />;
      break;
    case 'terminal':
      page = <TerminalPage node={route.node} login={route.login} onSessionEnded={sessionEnded} />;
      break;
    case 'recordings':
      page = <RecordingsPage onSessionEnded={sessionEnded} />;
      break;
    case 'recording':
      page = <PlayerPage id={route.id} onSessionEnded={sessionEnded} />;
      break;
    case 'sessions':
      page = <SessionsPage onSessionEnded={sessionEnded} />;
      break;
    case 'audit':
      page = <AuditPage onSessionEnded={sessionEnded} />;
      break;
    case 'users':
      page = session.can?.users === true ? <UsersPage session={session} onSessionEnded={sessionEnded} /> : <ForbiddenPage what="users" />;
      break;
    case 'roles':
      page = session.can?.roles === true ? <RolesPage onSessionEnded={sessionEnded} /> : <ForbiddenPage what="roles" />;
      break;
    case 'tokens':
      page = session.can?.tokens === true ? <TokensPage onSessionEnded={sessionEnded} /> : <ForbiddenPage what="tokens" />;
      break;
    case 'keys':
      page = <SecurityKeysPage onSessionEnded={sessionEnded} />;
      break;
    case 'not-found':
      page = <NotFoundPage path={route.path} />;
      break;
  }
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <Header session={session} onLoggedOut={loggedOut} onSessionEnded={sessionEnded} />
      {page}
    </>
  );
}

const root = document.getElementById('app');
if (root !== null) {
  document.addEventListener('click', onLinkClick);
  render(<App />, root);
}
