import { paths } from '../route';

interface Props {
  node: string;
  login: string;
}

/** Where the browser terminal will be; for now it says so and what to run instead. */
export function TerminalPage({ node, login }: Props) {
  return (
    <main id="main" class="page">
      <h1 tabIndex={-1}>
        Terminal: {login}@{node}
      </h1>
      <p>The web terminal comes in the next step of the web UI.</p>
      <p>
        Until then, connect from your own terminal with <code>jsh ssh {`${login}@${node}`}</code>
      </p>
      <p>
        <a href={paths.resources}>Back to resources</a>
      </p>
    </main>
  );
}
