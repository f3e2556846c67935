// Test worker: queues messages until the Go program takes over onmessage.
self.pending = [];
self.onmessage = (e) => self.pending.push(e.data);
importScripts('wasm_exec.js');
const go = new Go();
WebAssembly.instantiateStreaming(fetch('testworker.wasm'), go.importObject)
  .then((r) => go.run(r.instance))
  .catch((err) => self.postMessage({ event: 'fatal', message: String(err) }));
