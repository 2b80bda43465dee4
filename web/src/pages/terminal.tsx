// The web terminal (docs/web.md): PTY sessions on nodes over the proxy's terminal socket
// (`/webapi/web/terminal`, crates/proxy/src/terminal.rs), several in tabs. xterm.js is
// loaded when the page opens (lazy/xterm.ts), not with the first page.
import { useEffect, useRef, useState } from 'preact/hooks';
import * as api from '../api';
import { paths } from '../route';
import type { Emulator } from '../lazy/xterm';
import '../views.css';

interface Props {
  node: string;
  login: string;
  onSessionEnded: () => void;
}

interface Tab {
  id: number;
  node: string;
  login: string;
}

/** WebSocket close codes the proxy sends (terminal.rs). */
const CLOSE_NORMAL = 1000;
const CLOSE_REFUSED = 4001;

type Status =
  | { kind: 'loading' }
  | { kind: 'connecting' }
  | { kind: 'open' }
  | { kind: 'closed'; message: string };

let nextTabId = 1;

/** Terminals in tabs: the one the URL names, and any opened with "+". */
export function TerminalPage({ node, login, onSessionEnded }: Props) {
  const [tabs, setTabs] = useState<Tab[]>(() => [{ id: nextTabId++, node, login }]);
  const [active, setActive] = useState(tabs[0]?.id ?? 0);
  const [adding, setAdding] = useState(false);
  const tabList = useRef<HTMLDivElement>(null);

  const focusTab = (id: number) => {
    tabList.current?.querySelector<HTMLElement>(`#term-tab-${id}`)?.focus();
  };

  const select = (tab: Tab) => {
    setActive(tab.id);
    // The address names the terminal shown (a reload reopens it), without a new page.
    history.replaceState(null, '', paths.terminal(tab.node, tab.login));
  };

  const open = (tabNode: string, tabLogin: string) => {
    const tab = { id: nextTabId++, node: tabNode, login: tabLogin };
    setTabs([...tabs, tab]);
    select(tab);
    setAdding(false);
  };

  const close = (tab: Tab) => {
    const index = tabs.findIndex((t) => t.id === tab.id);
    const rest = tabs.filter((t) => t.id !== tab.id);
    setTabs(rest);
    const next = rest[Math.min(index, rest.length - 1)];
    if (tab.id === active && next !== undefined) {
      select(next);
    }
  };

  // Arrow keys move between tabs, Delete closes one (the ARIA tabs pattern); Tab leaves the list.
  const onTabKey = (event: KeyboardEvent, index: number) => {
    if (event.key === 'Delete') {
      event.preventDefault();
      const tab = tabs[index];
      if (tab !== undefined) {
        close(tab);
        const next = tabs[index + 1] ?? tabs[index - 1];
        if (next !== undefined) {
          setTimeout(() => focusTab(next.id));
        }
      }
      return;
    }
    const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
    if (step === 0) {
      return;
    }
    event.preventDefault();
    const tab = tabs[(index + step + tabs.length) % tabs.length];
    if (tab !== undefined) {
      select(tab);
      focusTab(tab.id);
    }
  };

  const current = tabs.find((t) => t.id === active) ?? null;

  return (
    <main id="main" class="page wide">
      <h1 tabIndex={-1}>Terminal{current !== null && `: ${current.login}@${current.node}`}</h1>
      <div class="term-bar">
        <div class="term-tabs" role="tablist" aria-label="Terminals" ref={tabList}>
          {tabs.map((tab, index) => (
            <span class={`term-tab${tab.id === active ? ' active' : ''}`} key={tab.id} role="presentation">
              <button
                type="button"
                role="tab"
                id={`term-tab-${tab.id}`}
                aria-selected={tab.id === active}
                aria-controls={`term-panel-${tab.id}`}
                tabIndex={tab.id === active ? 0 : -1}
                onClick={() => {
                  // A click (or Enter) goes into the terminal; arrow keys only move between tabs.
                  select(tab);
                  setTimeout(() =>
                    document.querySelector<HTMLElement>(`#term-panel-${tab.id} .xterm-helper-textarea`)?.focus(),
                  );
                }}
                onKeyDown={(event) => onTabKey(event, index)}
              >
                {tab.login}@{tab.node}
              </button>
              {/* For the mouse; the keyboard closes the focused tab with Delete (only tabs
                  belong in a tab list). */}
              <button
                type="button"
                class="link term-close"
                tabIndex={-1}
                aria-hidden="true"
                title={`Close the terminal ${tab.login}@${tab.node} (Delete)`}
                onClick={() => close(tab)}
              >
                ×
              </button>
            </span>
          ))}
        </div>
        <button
          type="button"
          class="term-add"
          aria-expanded={adding}
          aria-label="Open another terminal"
          title="Open another terminal"
          onClick={() => setAdding(!adding)}
        >
          +
        </button>
      </div>
      {adding && (
        <NewTerminalForm
          node={current?.node ?? node}
          login={current?.login ?? login}
          onOpen={open}
          onCancel={() => setAdding(false)}
        />
      )}
      {tabs.length === 0 && (
        <p>
          No terminal open. Open one with <strong>+</strong>, or pick a node in{' '}
          <a href={paths.resources}>Resources</a>.
        </p>
      )}
      {tabs.map((tab) => (
        <TerminalPanel
          key={tab.id}
          tab={tab}
          active={tab.id === active}
          onSessionEnded={onSessionEnded}
          onLeave={() => focusTab(tab.id)}
        />
      ))}
      <p class="hint">
        Copy a selection with Ctrl+Shift+C, paste with Ctrl+Shift+V. The terminal takes every key,
        Tab included: Ctrl+Shift+L leaves it for the tabs above, where the arrow keys move between
        terminals and Delete closes one.
      </p>
    </main>
  );
}

function NewTerminalForm({
  node,
  login,
  onOpen,
  onCancel,
}: {
  node: string;
  login: string;
  onOpen: (node: string, login: string) => void;
  onCancel: () => void;
}) {
  const [nodeText, setNodeText] = useState(node);
  const [loginText, setLoginText] = useState(login);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  const submit = (event: Event) => {
    event.preventDefault();
    if (nodeText.trim() !== '' && loginText.trim() !== '') {
      onOpen(nodeText.trim(), loginText.trim());
    }
  };
  return (
    <form class="filters term-new" onSubmit={submit} aria-label="Open another terminal">
      <div class="field">
        <label for="term-new-node">Node</label>
        <input id="term-new-node" ref={first} value={nodeText} required onInput={(e) => setNodeText(e.currentTarget.value)} />
      </div>
      <div class="field">
        <label for="term-new-login">Login</label>
        <input id="term-new-login" value={loginText} required onInput={(e) => setLoginText(e.currentTarget.value)} />
      </div>
      <div class="row actions">
        <button type="submit">Open</button>
        <button type="button" class="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** Why the socket closed, in words for the page. */
function closedMessage(event: CloseEvent, opened: boolean): string | null {
  const reason = event.reason.trim();
  if (event.code === CLOSE_REFUSED) {
    return `Refused: ${reason || 'the proxy refused this terminal.'}`;
  }
  if (event.code === CLOSE_NORMAL) {
    return `The session ended: ${reason || 'the node closed it.'}`;
  }
  if (reason !== '') {
    return `The connection ended: ${reason}`;
  }
  // 1006: no close frame. Before the upgrade, the proxy refused it (no session, a bad
  // request) or could not be reached; after it, the connection dropped.
  return opened ? null : '';
}

function TerminalPanel({
  tab,
  active,
  onSessionEnded,
  onLeave,
}: {
  tab: Tab;
  active: boolean;
  onSessionEnded: () => void;
  onLeave: () => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const emulator = useRef<Emulator | null>(null);
  const [status, setStatus] = useState<Status>({ kind: 'loading' });
  const [size, setSize] = useState<[number, number] | null>(null);
  const [attempt, setAttempt] = useState(0);
  const [loaded, setLoaded] = useState(false);
  const leave = useRef(onLeave);
  leave.current = onLeave;

  // Load xterm.js (once, shared by every tab) and make this tab's terminal.
  useEffect(() => {
    let gone = false;
    import('../lazy/xterm').then(
      ({ createEmulator }) => {
        if (gone || host.current === null) {
          return;
        }
        emulator.current = createEmulator(host.current, () => leave.current());
        emulator.current.fit();
        setLoaded(true);
      },
      (err: unknown) => !gone && setStatus({ kind: 'closed', message: `The terminal could not load: ${String(err)}` }),
    );
    return () => {
      gone = true;
      emulator.current?.term.dispose();
      emulator.current = null;
    };
  }, []);

  // One socket per attempt (Reconnect makes a new one).
  useEffect(() => {
    const em = emulator.current;
    if (!loaded || em === null) {
      return;
    }
    const { term } = em;
    em.fit();
    setSize([term.cols, term.rows]);
    setStatus({ kind: 'connecting' });
    const socket = new WebSocket(api.terminalUrl(tab.node, tab.login, term.cols, term.rows));
    socket.binaryType = 'arraybuffer';
    let opened = false;
    const encoder = new TextEncoder();
    const send = (data: Uint8Array<ArrayBuffer> | string) => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(data);
      }
    };
    socket.onopen = () => {
      opened = true;
      setStatus({ kind: 'open' });
      // The size may have changed while connecting.
      send(JSON.stringify({ resize: [term.cols, term.rows] }));
      if (host.current?.closest('[hidden]') === null) {
        term.focus();
      }
    };
    socket.onmessage = (event: MessageEvent) => {
      if (event.data instanceof ArrayBuffer) {
        term.write(new Uint8Array(event.data));
      }
    };
    socket.onclose = (event) => {
      const message = closedMessage(event, opened);
      if (message === null) {
        setStatus({ kind: 'closed', message: 'The connection to the proxy was lost.' });
        return;
      }
      if (message !== '') {
        setStatus({ kind: 'closed', message });
        return;
      }
      // Refused before the upgrade: say why if we can (a 401 is the session's end).
      api.currentSession().then(
        (session) => {
          if (session === null) {
            onSessionEnded();
          } else {
            setStatus({
              kind: 'closed',
              message: `Could not open a terminal to ${tab.login}@${tab.node}: the proxy refused the connection.`,
            });
          }
        },
        (err: unknown) =>
          setStatus({ kind: 'closed', message: err instanceof api.ApiError ? err.message : String(err) }),
      );
    };
    const input = term.onData((data) => send(encoder.encode(data)));
    // Mouse reports in the legacy encoding: bytes, one per character.
    const binary = term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    const resize = term.onResize(({ cols, rows }) => {
      setSize([cols, rows]);
      send(JSON.stringify({ resize: [cols, rows] }));
    });
    return () => {
      input.dispose();
      binary.dispose();
      resize.dispose();
      socket.onclose = null;
      socket.close();
    };
  }, [loaded, attempt, tab.node, tab.login, onSessionEnded]);

  // The terminal follows its element's size (the window, the tab being shown).
  useEffect(() => {
    const element = host.current;
    if (!loaded || element === null) {
      return;
    }
    const observer = new ResizeObserver(() => emulator.current?.fit());
    observer.observe(element);
    return () => observer.disconnect();
  }, [loaded]);

  const reconnect = () => {
    emulator.current?.term.reset();
    setAttempt(attempt + 1);
  };

  const label = `${tab.login}@${tab.node}`;
  return (
    <section
      class="term-panel"
      role="tabpanel"
      id={`term-panel-${tab.id}`}
      aria-labelledby={`term-tab-${tab.id}`}
      hidden={!active}
      data-state={status.kind}
      data-size={size === null ? undefined : `${size[0]}x${size[1]}`}
    >
      <p role="status" class="count">
        {status.kind === 'loading' && 'Loading the terminal…'}
        {status.kind === 'connecting' && `Connecting to ${label}…`}
        {status.kind === 'open' && `Connected to ${label}`}
        {status.kind === 'closed' && `Disconnected from ${label}`}
        {size !== null && ` · ${size[0]}×${size[1]}`}
      </p>
      {status.kind === 'closed' && (
        <div role="alert" class="error term-ended">
          <p>{status.message}</p>
          <button type="button" onClick={reconnect}>
            Reconnect
          </button>
        </div>
      )}
      <div class="term-host" ref={host} aria-label={`Terminal ${label}`} role="group" />
    </section>
  );
}
