// Test worker: queues messages until the Go program takes over onmessage.
self.pending = [];
self.onmessage = (e) => self.pending.push(e.data);
importScripts('wasm_exec.js');
const go = new Go();
// ?wasm=NAME picks another build of the test wasm (the benchmark compares builds).
const wasm = new URL(self.location.href).searchParams.get('wasm') || 'testworker.wasm';
WebAssembly.instantiateStreaming(fetch(wasm), go.importObject)
  .then((r) => go.run(r.instance))
  .catch((err) => self.postMessage({ event: 'fatal', message: String(err) }));
