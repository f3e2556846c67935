export { createLattice } from './lattice.js';
export type { LinkFactory } from './lattice.js';
export { LatticeError } from './errors.js';
export type { ErrorCode, ErrorInfo } from './errors.js';
export type { Link, LinkHandlers, RequestMessage, WorkerMessage } from './link.js';
export type {
  ExecResult,
  Lattice,
  LatticeConfig,
  Param,
  Rejection,
  Row,
  Shape,
  ShapeHandle,
  Status,
  SyncRequest,
  Transaction,
  Value,
} from './types.js';
