declare module 'virtual:lattice-assets' {
  export const workerUrl: string;
  export const wasmUrl: string;
}
