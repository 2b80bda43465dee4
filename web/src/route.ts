// Client-side routing under /web: the proxy answers every unknown /web/... path with
// index.html, and this module decides the page from location.pathname.
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'login' }
  | { page: 'resources' }
  | { page: 'terminal'; node: string; login: string }
  | { page: 'users' }
  | { page: 'roles' }
  | { page: 'tokens' }
  | { page: 'invite' }
  | { page: 'recordings' }
  | { page: 'recording'; id: string }
  | { page: 'audit' }
  | { page: 'sessions' }
  | { page: 'keys' }
  | { page: 'not-found'; path: string };

export const paths = {
  login: '/web/login',
  resources: '/web/resources',
  users: '/web/users',
  roles: '/web/roles',
  tokens: '/web/tokens',
  /** The signup page of an invite link; the token is in the fragment (never sent to the server). */
  invite: '/web/invite',
  terminal: (node: string, login: string) =>
    `/web/terminal/${encodeURIComponent(node)}/${encodeURIComponent(login)}`,
  recordings: '/web/recordings',
  recording: (id: string) => `/web/recordings/${encodeURIComponent(id)}`,
  audit: '/web/audit',
  sessions: '/web/sessions',
  keys: '/web/security-keys',
};

function decode(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

export function parse(pathname: string): Route {
  const path = pathname.replace(/\/+$/, '');
  if (path === '/web' || path === '/web/resources') {
    return { page: 'resources' };
  }
  if (path === '/web/login') {
    return { page: 'login' };
  }
  if (path === '/web/users' || path === '/web/roles' || path === '/web/tokens' || path === '/web/invite') {
    return { page: path.slice('/web/'.length) as 'users' | 'roles' | 'tokens' | 'invite' };
  }
  const terminal = /^\/web\/terminal\/([^/]+)\/([^/]+)$/.exec(path);
  if (terminal !== null) {
    const node = decode(terminal[1] ?? '');
    const login = decode(terminal[2] ?? '');
    if (node !== null && login !== null) {
      return { page: 'terminal', node, login };
    }
  }
  if (path === '/web/recordings') {
    return { page: 'recordings' };
  }
  const recording = /^\/web\/recordings\/([^/]+)$/.exec(path);
  const id = recording === null ? null : decode(recording[1] ?? '');
  if (id !== null && id !== '') {
    return { page: 'recording', id };
  }
  if (path === '/web/sessions') {
    return { page: 'sessions' };
  }
  if (path === '/web/audit') {
    return { page: 'audit' };
  }
  if (path === '/web/security-keys') {
    return { page: 'keys' };
  }
  return { page: 'not-found', path: pathname };
}

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false): void {
  if (replace) {
    history.replaceState(null, '', to);
  } else {
    history.pushState(null, '', to);
  }
  listeners.forEach((listener) => listener());
}

/** The current route; re-renders on navigate() and on the browser's back/forward. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parse(location.pathname));
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return route;
}

/**
 * Links inside the app navigate without a page load; a modified click (new tab) and
 * links elsewhere are the browser's.
 */
export function onLinkClick(event: MouseEvent): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const anchor = (event.target as Element | null)?.closest('a');
  if (anchor === null || anchor === undefined || anchor.target !== '' || anchor.origin !== location.origin) {
    return;
  }
  // Not /webapi/... (an API URL, such as a recording's download), nor a download link.
  if ((anchor.pathname !== '/web' && !anchor.pathname.startsWith('/web/')) || anchor.hasAttribute('download')) {
    return;
  }
  event.preventDefault();
  navigate(anchor.pathname + anchor.search);
}
