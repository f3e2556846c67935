// Makes dist/worker.js self-contained (wasm_exec.js inlined), so a bundler
// that copies it as a plain asset (Vite, webpack) ships a worker that works
// on its own. Runs before `npm pack`; idempotent.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const worker = fileURLToPath(new URL('../dist/worker.js', import.meta.url));
const wasm = fileURLToPath(new URL('../dist/lattice.wasm', import.meta.url));
for (const f of [worker, wasm]) {
  if (!existsSync(f)) {
    console.error(`bundle-worker: ${f} is missing: run ./build.sh build in the repository first`);
    process.exit(1);
  }
}
await build({
  entryPoints: [worker],
  outfile: worker,
  allowOverwrite: true,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  logLevel: 'warning',
});
