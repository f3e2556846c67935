// Go's wasm_exec.js (copied next to worker.js by the build) defines
// globalThis.Go when imported for its side effect.
export {};
