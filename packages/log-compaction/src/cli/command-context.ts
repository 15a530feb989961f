import type { CliStreams, Reporter } from './reporter.ts';

/** What every command runs with. */
export interface CommandContext {
  readonly reporter: Reporter;
  /** Standard input and output, for files named `-`. */
  readonly streams: CliStreams;
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM: the command stops and changes nothing. */
  readonly signal: AbortSignal;
}

/** The options of commands that read or write a node's database. */
export interface DatabaseOptions {
  /** `postgres://…` or a PGlite folder. */
  readonly db: string;
  /** The Raft schema. Default `raft`. */
  readonly schema: string;
}
