import { paths } from '../route';

const WHAT: Record<string, string> = {
  users: 'manage users (the `user` resource)',
  roles: 'manage roles (the `role` resource)',
  tokens: 'manage join tokens (the `token` resource)',
};

/** An admin page typed into the address bar by a user whose roles do not allow it. */
export function ForbiddenPage({ what }: { what: string }) {
  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>Not allowed</h1>
      <p role="alert" class="error" data-testid="forbidden">
        Your roles do not allow you to {WHAT[what] ?? what}. Ask an admin for a role that does.
      </p>
      <p>
        <a href={paths.resources}>Go to resources</a>
      </p>
    </main>
  );
}
