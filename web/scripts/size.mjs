// Prints the gzip size of the package's JavaScript as an app would ship it:
// each entry bundled and minified by esbuild, React left external.
//   node scripts/size.mjs   (after npm run build; the worker after ./build.sh build)
import { build } from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const dist = (f) => fileURLToPath(new URL(`../dist/${f}`, import.meta.url));
const kib = (n) => (n / 1024).toFixed(1) + ' KiB';

async function measure(label, contents) {
  const r = await build({
    stdin: { contents, resolveDir: fileURLToPath(new URL('../dist', import.meta.url)), loader: 'js' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    external: ['react', 'react-dom'],
    write: false,
    logLevel: 'error',
  });
  const code = r.outputFiles[0].contents;
  console.log(`${label}: ${kib(code.length)} minified, ${kib(gzipSync(code, { level: 9 }).length)} gzip`);
}

await measure('@latticesync/web (createLattice)', "export { createLattice, LatticeError } from './index.js';");
await measure(
  '@latticesync/web + /react (all hooks)',
  "export * from './index.js'; export * from './react.js';",
);
if (existsSync(dist('worker.js'))) {
  const w = readFileSync(dist('worker.js'));
  console.log(`worker.js (as shipped, with wasm_exec.js): ${kib(w.length)}, ${kib(gzipSync(w, { level: 9 }).length)} gzip`);
}
