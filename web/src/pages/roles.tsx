import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import * as api from '../api';
import * as admin from '../admin-api';
import '../admin.css';

interface Props {
  onSessionEnded: () => void;
}

const TEMPLATE = `kind: role
version: v7
metadata:
  name: new-role
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      '*': '*'
    rules:
      - resources: [session]
        verbs: [list, read]
  deny: {}
`;

/** Where the server says the YAML is wrong. */
interface Problem {
  message: string;
  line: number | null;
  column: number | null;
}

/**
 * Roles: the list, and a YAML editor (a textarea with line numbers) that creates or
 * replaces one. The server checks the YAML with the parser auth stores it with; a refusal
 * names the line and column, shown beside the line.
 */
export function RolesPage({ onSessionEnded }: Props) {
  const [roles, setRoles] = useState<admin.RoleSummary[] | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [yaml, setYaml] = useState(TEMPLATE);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const text = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLDivElement>(null);

  const failed = useCallback(
    (err: unknown) => {
      setBusy(false);
      if (err instanceof api.ApiError && err.status === 401) {
        onSessionEnded();
        return;
      }
      if (err instanceof api.ApiError) {
        setProblem({ message: err.message, line: err.line, column: err.column });
      } else {
        setProblem({ message: String(err), line: null, column: null });
      }
    },
    [onSessionEnded],
  );

  const load = useCallback(() => {
    admin.listRoles().then((loaded) => setRoles(loaded.roles), failed);
  }, [failed]);
  useEffect(load, [load]);

  const open = (name: string | null) => {
    setProblem(null);
    setNotice(null);
    setConfirmDelete(false);
    if (name === null) {
      setEditing(null);
      setYaml(TEMPLATE);
      text.current?.focus();
      return;
    }
    setBusy(true);
    admin.getRole(name).then((role) => {
      setBusy(false);
      setEditing(role.name);
      setYaml(role.yaml);
      text.current?.focus();
    }, failed);
  };

  const save = (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    setNotice(null);
    admin.saveRole(yaml, editing !== null).then((saved) => {
      setBusy(false);
      setEditing(saved.name);
      const warnings = saved.warnings.length > 0 ? ` Accepted but not enforced: ${saved.warnings.join(', ')}.` : '';
      setNotice(`Role ${saved.name} ${saved.created ? 'created' : 'saved'}.${warnings}`);
      load();
    }, failed);
  };

  const remove = () => {
    if (editing === null) {
      return;
    }
    const name = editing;
    setBusy(true);
    admin.deleteRole(name).then(() => {
      setBusy(false);
      setConfirmDelete(false);
      setEditing(null);
      setYaml(TEMPLATE);
      setNotice(`Role ${name} deleted.`);
      load();
    }, failed);
  };

  /** Puts the caret at the error's line and column. */
  const goToProblem = () => {
    const area = text.current;
    if (area === null || problem?.line === null || problem === null) {
      return;
    }
    const lines = yaml.split('\n');
    const before = lines.slice(0, problem.line - 1).reduce((sum, line) => sum + line.length + 1, 0);
    const at = before + Math.max(0, (problem.column ?? 1) - 1);
    area.focus();
    area.setSelectionRange(at, at);
  };

  const lineCount = yaml.split('\n').length;
  const where = problem !== null && problem.line !== null ? `Line ${problem.line}, column ${problem.column ?? 1}: ` : '';

  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Roles</h1>
      <div class="split">
        <nav aria-label="Roles" class="role-list">
          <h2>All roles</h2>
          {roles === null ? (
            <p role="status">Loading…</p>
          ) : (
            <ul>
              {roles.map((role) => (
                <li key={role.name}>
                  <button type="button" class="link" aria-current={editing === role.name} onClick={() => open(role.name)}>
                    {role.name}
                  </button>
                </li>
              ))}
            </ul>
          )}
          <button type="button" onClick={() => open(null)}>
            New role
          </button>
        </nav>
        <form class="editor" onSubmit={save}>
          <h2>{editing === null ? 'New role' : `Edit ${editing}`}</h2>
          <label for="role-yaml">Role (YAML)</label>
          <div class="code-area">
            <div class="gutter" ref={gutter} aria-hidden="true">
              {Array.from({ length: lineCount }, (_, i) => (
                <span
                  key={i}
                  class={problem?.line === i + 1 ? 'bad' : undefined}
                  data-testid={problem?.line === i + 1 ? 'error-line' : undefined}
                >
                  {i + 1}
                </span>
              ))}
            </div>
            <textarea
              id="role-yaml"
              ref={text}
              spellcheck={false}
              autoCapitalize="none"
              wrap="off"
              rows={Math.min(Math.max(lineCount + 1, 12), 40)}
              aria-invalid={problem !== null}
              aria-describedby={problem !== null ? 'role-error' : undefined}
              value={yaml}
              onInput={(e) => setYaml(e.currentTarget.value)}
              onScroll={(e) => {
                if (gutter.current !== null) {
                  gutter.current.scrollTop = e.currentTarget.scrollTop;
                }
              }}
            />
          </div>
          {problem !== null && (
            <p id="role-error" role="alert" class="error" data-testid="role-error">
              {where}
              {problem.message}{' '}
              {problem.line !== null && (
                <button type="button" class="link" onClick={goToProblem}>
                  Go to line {problem.line}
                </button>
              )}
            </p>
          )}
          {notice !== null && (
            <p role="status" class="notice" data-testid="role-notice">
              {notice}
            </p>
          )}
          <div class="row">
            <button type="submit" disabled={busy}>
              {editing === null ? 'Create role' : 'Save role'}
            </button>
            {editing !== null &&
              (confirmDelete ? (
                <>
                  <button type="button" class="danger" disabled={busy} onClick={remove}>
                    Confirm delete {editing}
                  </button>
                  <button type="button" onClick={() => setConfirmDelete(false)}>
                    Cancel
                  </button>
                </>
              ) : (
                <button type="button" disabled={busy} onClick={() => setConfirmDelete(true)}>
                  Delete role
                </button>
              ))}
          </div>
        </form>
      </div>
    </main>
  );
}
