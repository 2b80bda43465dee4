// The web UI's build (docs/web.md). The output, web/dist, is committed and embedded into
// the proxy; test.sh rebuilds it from these sources and fails if it differs, so the build
// must be deterministic: no timestamps, no absolute paths, content-hashed file names.
import { defineConfig } from 'vite';

export default defineConfig({
  // The proxy serves the app under /web (crates/proxy/src/web_ui.rs).
  base: '/web/',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // Every browser we support has <link rel=modulepreload>; the polyfill would only add bytes.
    modulePreload: { polyfill: false },
    // Small assets stay files: inlined data: URLs would need a wider CSP.
    assetsInlineLimit: 0,
    target: 'es2022',
    reportCompressedSize: false,
  },
});
