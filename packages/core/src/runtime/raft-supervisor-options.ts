import type { Logger } from '../logger.ts';
import type { Clock } from './clock.ts';
import type { RaftNodeOptions } from './raft-node-options.ts';

/** What {@link RaftSupervisorOptions.open} is told about the node it opens. */
export interface RaftSupervisorOpenContext {
  /** Which node this is: 1 for the first, 2 for the first replacement after a fatal error, … */
  readonly incarnation: number;
  /** The try for this incarnation, from 1; counts up while starts keep failing. */
  readonly attempt: number;
  /** Aborts when the supervisor closes: give up opening. */
  readonly signal: AbortSignal;
}

/**
 * The options of one supervised node: {@link RaftNodeOptions}, built afresh by `open` for each
 * incarnation, plus what to free when that incarnation ends.
 */
export interface SupervisedNodeOptions<Command, Result> extends RaftNodeOptions<Command, Result> {
  /**
   * Frees what `open` built for this incarnation only (a connection pool, say). Called once,
   * after the incarnation's node closed, or after its start failed. Default: nothing to free.
   * A rejection is logged at `warn` and otherwise ignored.
   */
  readonly release?: () => void | Promise<void>;
}

/** Options of {@link RaftSupervisor.start}. */
export interface RaftSupervisorOptions<Command, Result> {
  /**
   * Builds everything one node needs, afresh for every incarnation: the stores (over the same
   * durable data each time: the node's identity, term, vote and log must survive), the state
   * machine and a NEW transport. A stopped node closed its transport, and a transport listens
   * for one node only: with the in-process test network, return `network.transport(id)` each
   * time. It may reject (the database is still down, say): the supervisor then retries after
   * the back-off. Must return the same `id` every time.
   */
  readonly open: (
    context: RaftSupervisorOpenContext,
  ) => Promise<SupervisedNodeOptions<Command, Result>>;
  /**
   * Exponential back-off between restart tries: the n-th try waits `initialMs * 2^(n-1)` ms,
   * at most `maxMs`. No jitter: each node restarts against its own stores, so there is no herd
   * to spread. Defaults: `initialMs` 100, `maxMs` 5,000.
   */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /**
   * Times the back-off and the downtime. Nodes whose options (from `open`) give no `clock` take
   * this one. Default: the process's clock.
   */
  readonly clock?: Clock;
  /** Where the supervisor logs restarts (`warn`) and recoveries (`info`). Default: discards. */
  readonly logger?: Logger;
  /**
   * Aborting it closes the supervisor, as {@link RaftSupervisor.close} does. Default: none.
   * Already aborted: `start` rejects with its reason.
   */
  readonly signal?: AbortSignal;
}
