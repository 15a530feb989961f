import { CorruptSnapshotError, StorageError } from '@tsraft/core';
import { SnapshotFileError } from '../file/snapshot-file-format.ts';

/** The exit codes of `tsraft-snapshot` (documented in the package README). */
export const EXIT = {
  ok: 0,
  /** An unexpected failure: a bug. */
  failure: 1,
  /** Wrong usage: an unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** No such snapshot, file or admin router. */
  notFound: 3,
  /** A checksum, size or format check failed; nothing was changed. */
  corrupt: 4,
  /** Refused as unsafe: the database is in use or holds state the command would overwrite. */
  refused: 5,
  /** The database or node cannot be reached or failed; nothing was changed. */
  unavailable: 6,
  /** Interrupted (Ctrl-C); nothing was changed. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure the tool reports as such: what went wrong, what to do, and its exit code. */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: ExitCode;
  /** What to do about it. */
  readonly hint: string;

  constructor(exitCode: ExitCode, message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
    this.hint = hint;
  }
}

/** The {@link CliError} to report for anything a command threw. */
export function toCliError(error: unknown, signal: AbortSignal | undefined): CliError {
  if (error instanceof CliError) return error;
  if (signal?.aborted) {
    return new CliError(
      EXIT.interrupted,
      'interrupted',
      'nothing was changed; run the command again',
      { cause: error },
    );
  }
  if (error instanceof SnapshotFileError) {
    return error.problem === 'unsupported'
      ? new CliError(EXIT.corrupt, error.message, 'use the tsraft-snapshot that wrote the file', {
          cause: error,
        })
      : new CliError(
          EXIT.corrupt,
          `the snapshot file is damaged: ${error.message}`,
          'nothing was changed; use another copy of the file (verify it first)',
          { cause: error },
        );
  }
  if (error instanceof CorruptSnapshotError) {
    return new CliError(
      EXIT.corrupt,
      (error as Error).message,
      'nothing was changed; the snapshot is damaged: take a new one (tsraft-snapshot create) and use that',
      { cause: error },
    );
  }
  if (error instanceof StorageError) {
    return new CliError(
      EXIT.unavailable,
      error.message,
      "nothing was changed; check that Postgres runs and that --db and --schema name the node's database, then try again",
      { cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new CliError(
    EXIT.failure,
    `unexpected failure: ${message}`,
    'this is a bug of tsraft-snapshot: please report it with this message',
    { cause: error },
  );
}
