import { useEffect, useRef, useState } from 'preact/hooks';
import * as api from '../api';
import { paths } from '../route';

const PAGE_SIZE = 50;
/** Typing pauses this long before the list is asked for again. */
const SEARCH_DELAY_MS = 250;

interface Props {
  onSessionEnded: () => void;
}

type Load =
  | { kind: 'loading' }
  | { kind: 'failed'; message: string }
  | { kind: 'loaded'; page: api.NodePage };

/**
 * The nodes the user's roles let them reach: search, label filters, sort by name, and
 * paging with the server's cursor (the server filters and pages, so 10,000 nodes cost
 * one page of rows here).
 */
export function ResourcesPage({ onSessionEnded }: Props) {
  const [searchText, setSearchText] = useState('');
  const [search, setSearch] = useState('');
  const [labels, setLabels] = useState<string[]>([]);
  const [labelText, setLabelText] = useState('');
  const [labelError, setLabelError] = useState<string | null>(null);
  const [sort, setSort] = useState<api.NodeSort>('hostname');
  // The cursors of the pages before this one (null: the first page), and this page's.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [load, setLoad] = useState<Load>({ kind: 'loading' });
  const [retry, setRetry] = useState(0);
  const cursor = cursors[cursors.length - 1] ?? null;

  // A new query starts from the first page: each change of it resets the cursors in the
  // same render, so no request goes out with a cursor of another query.
  const changeQuery = (change: () => void) => {
    change();
    setCursors([null]);
  };

  useEffect(() => {
    const timer = setTimeout(() => {
      const text = searchText.trim();
      if (text !== search) {
        changeQuery(() => setSearch(text));
      }
    }, SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [searchText]);

  useEffect(() => {
    let current = true;
    setLoad((previous) => (previous.kind === 'loaded' ? previous : { kind: 'loading' }));
    api.listNodes({ search, labels, sort, limit: PAGE_SIZE, cursor }).then(
      (page) => current && setLoad({ kind: 'loaded', page }),
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
  }, [search, labels, sort, cursor, retry, onSessionEnded]);

  const addLabel = (text: string) => {
    const label = text.trim();
    const eq = label.indexOf('=');
    if (eq <= 0) {
      setLabelError('Write a label filter as key=value, for example env=prod.');
      return false;
    }
    setLabelError(null);
    if (!labels.includes(label)) {
      changeQuery(() => setLabels([...labels, label]));
    }
    return true;
  };

  const submitLabel = (event: Event) => {
    event.preventDefault();
    if (addLabel(labelText)) {
      setLabelText('');
    }
  };

  const pageNumber = cursors.length;
  const page = load.kind === 'loaded' ? load.page : null;

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Resources</h1>
      <div class="filters">
        <div class="field">
          <label for="node-search">Search</label>
          <input
            id="node-search"
            type="search"
            placeholder="Name or label"
            value={searchText}
            onInput={(e) => setSearchText(e.currentTarget.value)}
          />
        </div>
        <form class="field" onSubmit={submitLabel}>
          <label for="label-filter">Filter by label</label>
          <div class="row">
            <input
              id="label-filter"
              placeholder="key=value"
              autoCapitalize="none"
              spellcheck={false}
              aria-invalid={labelError !== null}
              aria-describedby={labelError !== null ? 'label-filter-error' : undefined}
              value={labelText}
              onInput={(e) => setLabelText(e.currentTarget.value)}
            />
            <button type="submit">Add filter</button>
          </div>
          {labelError !== null && (
            <p id="label-filter-error" class="error">
              {labelError}
            </p>
          )}
        </form>
      </div>
      {labels.length > 0 && (
        <ul class="chips" aria-label="Label filters">
          {labels.map((label) => (
            <li key={label}>
              <span class="chip">{label}</span>
              <button
                type="button"
                class="link"
                aria-label={`Remove filter ${label}`}
                onClick={() => changeQuery(() => setLabels(labels.filter((l) => l !== label)))}
              >
                Remove
              </button>
            </li>
          ))}
        </ul>
      )}

      <p role="status" class="count" data-testid="node-count">
        {load.kind === 'loading' && 'Loading nodes…'}
        {page !== null &&
          (page.total === 0
            ? 'No nodes match.'
            : `Nodes ${(pageNumber - 1) * PAGE_SIZE + 1}–${(pageNumber - 1) * PAGE_SIZE + page.nodes.length} of ${page.total}`)}
      </p>
      {load.kind === 'failed' && (
        <div role="alert" class="error">
          <p>{load.message}</p>
          <button type="button" onClick={() => setRetry(retry + 1)}>
            Try again
          </button>
        </div>
      )}

      {page !== null && page.nodes.length > 0 && (
        <table class="nodes">
          <thead>
            <tr>
              <th scope="col" aria-sort={sort === 'hostname' ? 'ascending' : 'descending'}>
                <button
                  type="button"
                  class="link"
                  onClick={() => changeQuery(() => setSort(sort === 'hostname' ? '-hostname' : 'hostname'))}
                >
                  Hostname <span aria-hidden="true">{sort === 'hostname' ? '▲' : '▼'}</span>
                  <span class="visually-hidden">
                    {sort === 'hostname' ? ', sorted A to Z; sort Z to A' : ', sorted Z to A; sort A to Z'}
                  </span>
                </button>
              </th>
              <th scope="col">Labels</th>
              <th scope="col">Connect</th>
            </tr>
          </thead>
          <tbody>
            {page.nodes.map((node) => (
              <NodeRow key={node.uuid} node={node} logins={page.logins} onLabel={addLabel} />
            ))}
          </tbody>
        </table>
      )}

      {page !== null && (pageNumber > 1 || page.next_cursor !== null) && (
        <nav class="pager" aria-label="Pages of nodes">
          <button type="button" disabled={pageNumber === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
            Previous page
          </button>
          <span>Page {pageNumber}</span>
          <button
            type="button"
            disabled={page.next_cursor === null}
            onClick={() => page.next_cursor !== null && setCursors([...cursors, page.next_cursor])}
          >
            Next page
          </button>
        </nav>
      )}
    </main>
  );
}

interface RowProps {
  node: api.Node;
  logins: string[];
  onLabel: (label: string) => void;
}

function NodeRow({ node, logins, onLabel }: RowProps) {
  const labels = Object.entries(node.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return (
    <tr>
      <th scope="row" data-label="Hostname">
        {node.hostname}
      </th>
      <td data-label="Labels">
        <ul class="chips">
          {labels.map(([key, value]) => (
            <li key={key}>
              <button
                type="button"
                class="chip"
                title={`Filter by ${key}=${value}`}
                onClick={() => onLabel(`${key}=${value}`)}
              >
                {key}={value}
              </button>
            </li>
          ))}
        </ul>
      </td>
      <td data-label="Connect">
        <ConnectMenu node={node.hostname} logins={logins} />
      </td>
    </tr>
  );
}

/** A disclosure (details/summary: keyboard and screen readers for free) listing the logins. */
function ConnectMenu({ node, logins }: { node: string; logins: string[] }) {
  const details = useRef<HTMLDetailsElement>(null);
  if (logins.length === 0) {
    return <span class="hint">No logins allowed</span>;
  }
  const closeOnEscape = (event: KeyboardEvent) => {
    if (event.key === 'Escape' && details.current?.open) {
      details.current.open = false;
      details.current.querySelector('summary')?.focus();
    }
  };
  return (
    <details class="menu" ref={details} onKeyDown={closeOnEscape}>
      <summary>
        Connect<span class="visually-hidden"> to {node}</span>
      </summary>
      <ul>
        {logins.map((login) => (
          <li key={login}>
            <a href={paths.terminal(node, login)}>{login}</a>
          </li>
        ))}
      </ul>
    </details>
  );
}
