// The recordings player, loaded only by a recording's page (a dynamic import: the first
// page does not carry asciinema-player). Its terminal emulator is WebAssembly compiled
// from bytes in its bundle, which is why the CSP has 'wasm-unsafe-eval' (docs/web.md).
export { create } from 'asciinema-player';
export type { Player } from 'asciinema-player';
import 'asciinema-player/dist/bundle/asciinema-player.css';
