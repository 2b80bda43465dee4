import { paths } from '../route';

export function NotFoundPage({ path }: { path: string }) {
  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>No such page</h1>
      <p>
        There is no page at <code>{path}</code>.
      </p>
      <p>
        <a href={paths.resources}>Go to resources</a>
      </p>
    </main>
  );
}
