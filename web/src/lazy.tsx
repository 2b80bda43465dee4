import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/**
 * A page whose code is fetched the first time it is shown (a chunk of its own, from this
 * origin like every script), so the first page a user sees does not carry the pages
 * only admins or new users open.
 */
export function lazyPage<P extends object>(load: () => Promise<ComponentType<P>>): ComponentType<P> {
  let loaded: ComponentType<P> | null = null;
  return function LazyPage(props: P) {
    const [Page, setPage] = useState<ComponentType<P> | null>(() => loaded);
    const [error, setError] = useState<string | null>(null);
    useEffect(() => {
      if (Page !== null) {
        return;
      }
      load().then(
        (page) => {
          loaded = page;
          setPage(() => page);
        },
        () => setError('This page could not be loaded. Check your connection and reload.'),
      );
    }, [Page]);
    // The page's heading appears only now: keyboard and screen-reader users land on it.
    useEffect(() => {
      if (Page !== null) {
        document.querySelector<HTMLElement>('main h1')?.focus();
      }
    }, [Page]);
    if (error !== null) {
      return (
        <main id="main" class="page">
          <p role="alert" class="error">
            {error}
          </p>
        </main>
      );
    }
    if (Page === null) {
      return (
        <main id="main" class="page">
          <p role="status">Loading…</p>
        </main>
      );
    }
    return <Page {...props} />;
  };
}
