/**
 * The stable error codes of the page/worker contract (jsbridge/MESSAGES.md).
 * Match on `code`, never on the message text.
 */
export type ErrorCode =
  | 'SQL_ERROR'
  | 'CONSTRAINT'
  | 'PK_UPDATE'
  | 'READONLY'
  | 'BAD_SHAPE'
  | 'UNAUTHORIZED'
  | 'BAD_REQUEST'
  | 'CLOSED'
  | 'INTERNAL';

const codes: ReadonlySet<string> = new Set<ErrorCode>([
  'SQL_ERROR',
  'CONSTRAINT',
  'PK_UPDATE',
  'READONLY',
  'BAD_SHAPE',
  'UNAUTHORIZED',
  'BAD_REQUEST',
  'CLOSED',
  'INTERNAL',
]);

/** An error as it crosses the page/worker boundary. */
export interface ErrorInfo {
  code: string;
  message: string;
}

/** Every error Lattice reports is a LatticeError with a stable `code`. */
export class LatticeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LatticeError';
    this.code = code;
  }

  /** Builds a LatticeError from the `{ code, message }` a worker sent. */
  static from(info: ErrorInfo | undefined): LatticeError {
    if (!info) return new LatticeError('INTERNAL', 'the worker reported an error without details');
    const code = codes.has(info.code) ? (info.code as ErrorCode) : 'INTERNAL';
    return new LatticeError(code, info.message);
  }
}

/** Wraps anything thrown into a LatticeError (used where a code is required). */
export function toLatticeError(err: unknown): LatticeError {
  if (err instanceof LatticeError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new LatticeError('INTERNAL', message, { cause: err });
}
