import { defineConfig } from 'vite';

// The built files go to ../static, which is shipped in the Python package and committed: CI rebuilds them
// with `npm ci && npm run build` and checks that nothing changed, so the output must depend on the sources
// and the lock file only (content hashes in the file names, no timestamps, one chunk).
export default defineConfig({
  base: '/ui/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: '../static',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    modulePreload: { polyfill: false },
    rollupOptions: { output: { inlineDynamicImports: true } },
  },
});
