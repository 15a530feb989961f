import { NodeClosedError, NodeRecoveringError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import { bindLogger, type Logger, noopLogger } from '../logger.ts';
import { type Clock, realClock } from './clock.ts';
import { type ProposeOptions, RaftNode, type ReadOptions } from './raft-node.ts';
import type { RaftNodeEventName } from './raft-node-events.ts';
import type { RaftSupervisorEventName, RaftSupervisorEvents } from './raft-supervisor-events.ts';
import type {
  RaftSupervisorOpenContext,
  RaftSupervisorOptions,
  SupervisedNodeOptions,
} from './raft-supervisor-options.ts';
import type { RaftSupervisorStatus } from './raft-supervisor-status.ts';
import { TypedEvents } from './typed-events.ts';

/** The node events passed on as they come; `fatal` is passed on after the supervisor reacted. */
const FORWARDED_EVENTS = [
  'leader-change',
  'role-change',
  'config-change',
  'config-option-ignored',
  'commit',
  'apply',
  'persist',
  'proposal',
  'read',
  'snapshot',
  'peer-unauthorized',
] as const satisfies readonly RaftNodeEventName[];

/** One node and what its `open` built for it. */
interface Incarnation<Command, Result> {
  readonly number: number;
  readonly node: RaftNode<Command, Result>;
  readonly options: SupervisedNodeOptions<Command, Result>;
}

interface Recovery {
  readonly fatal: Error;
  readonly since: number;
  attempt: number;
  lastError: Error;
}

/**
 * Keeps a {@link RaftNode} running through fatal errors: when the node stops on one (its
 * `fatal` event: a storage failure such as a lost database, a broken invariant), the supervisor
 * closes it, waits with exponential back-off, and starts a new node from a fresh `open()`,
 * trying again until a start succeeds or the supervisor is closed.
 *
 * Why this is safe: the dead node issued its last write before stopping, and the supervisor
 * waits for its `close()` (which waits for the persist in flight) before the next node loads the
 * stores, so no late write of the old incarnation lands behind the new one's back. The new node
 * recovers the term, vote and log it had promised from the stores alone (Raft paper, Figure 2),
 * so nothing acknowledged is lost, and it catches up from the leader like any restarted
 * follower. Stores should bound their calls (timeouts): a call that never settles keeps the
 * old incarnation from closing, and so the new one from starting.
 *
 * While no node runs (the supervisor is recovering), {@link propose} and {@link read} reject at
 * once with the retryable {@link NodeRecoveringError}, whose `cause` is the fatal error; so do
 * calls that were in flight on the node when it stopped (a proposal's outcome is then unknown: a
 * retry with the same client session is safe). The node, dead, neither leads nor acknowledges.
 *
 * Close the supervisor, never its {@link node}: a node closed directly is not replaced.
 */
export class RaftSupervisor<Command, Result> {
  readonly #open: RaftSupervisorOptions<Command, Result>['open'];
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #events: TypedEvents<RaftSupervisorEvents> = new TypedEvents(() => this.#logger);
  /** Aborted by `close()`: stops the back-off, the `open()` and the start under way. */
  readonly #lifetime = new AbortController();
  #id: NodeId | undefined;
  #incarnations = 0;
  #current: Incarnation<Command, Result> | undefined;
  #recovery: Recovery | undefined;
  /** Closing the dead node and starting replacements; settles once a node runs or on close. */
  #recovering: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  private constructor(options: RaftSupervisorOptions<Command, Result>) {
    this.#open = options.open;
    this.#initialMs = options.backoff?.initialMs ?? 100;
    this.#maxMs = options.backoff?.maxMs ?? 5000;
    if (!(this.#initialMs > 0) || !(this.#maxMs >= this.#initialMs)) {
      throw new TypeError('backoff needs 0 < initialMs <= maxMs');
    }
    this.#logger = options.logger ?? noopLogger;
    this.#clock = options.clock ?? realClock;
  }

  /**
   * Opens and starts the first node. Rejects as `open()` or `RaftNode.start` does (a first
   * start is not retried: a configuration mistake should surface, not loop), after releasing
   * what `open()` built.
   */
  static async start<Command, Result>(
    options: RaftSupervisorOptions<Command, Result>,
  ): Promise<RaftSupervisor<Command, Result>> {
    const { signal } = options;
    signal?.throwIfAborted();
    const supervisor = new RaftSupervisor(options);
    const onAbort = (): void => void supervisor.close();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      supervisor.#run(await supervisor.#launch(1));
    } catch (error) {
      signal?.removeEventListener('abort', onAbort);
      await supervisor.close();
      signal?.throwIfAborted();
      throw error;
    }
    return supervisor;
  }

  /** The node's id (the same for every incarnation). */
  get id(): NodeId {
    return this.#id as NodeId;
  }

  /** The running node, or `undefined` while recovering and once closed. */
  get node(): RaftNode<Command, Result> | undefined {
    return this.#current?.node;
  }

  /**
   * The running node, for code that calls it directly (for example the node lookup of a tRPC
   * app). Throws {@link NodeRecoveringError} (retryable; `cause`: the fatal error) while no node
   * runs, {@link NodeClosedError} once the supervisor is closed. Unlike {@link propose}, a call on
   * the node that stops meanwhile fails with the node's own `NodeClosedError`.
   */
  runningNode(): RaftNode<Command, Result> {
    return this.#running().node;
  }

  /**
   * {@link RaftNode.propose} on the running node. Rejects with {@link NodeRecoveringError}
   * (retryable; `cause`: the fatal error) while no node runs or when the node stops during the
   * call, with {@link NodeClosedError} once the supervisor is closed, or as the node does.
   */
  async propose(command: Command, options?: ProposeOptions): Promise<Result> {
    const current = this.#running();
    try {
      return await current.node.propose(command, options);
    } catch (error) {
      throw this.#translate(current, error);
    }
  }

  /**
   * {@link RaftNode.read} on the running node; rejects as {@link propose} does when no node
   * runs, or as the node does.
   */
  async read<T>(fn: () => T | Promise<T>, options?: ReadOptions): Promise<T> {
    const current = this.#running();
    try {
      return await current.node.read(fn, options);
    } catch (error) {
      throw this.#translate(current, error);
    }
  }

  /** The running node's status, or where recovery stands (see {@link RaftSupervisorStatus}). */
  status(): RaftSupervisorStatus {
    const id = this.id;
    if (this.#closing !== undefined) return { state: 'closed', id };
    const current = this.#current;
    if (current !== undefined) {
      return { ...current.node.status(), state: 'running', incarnation: current.number };
    }
    const recovery = this.#recovery as Recovery;
    return {
      state: 'recovering',
      id,
      incarnation: this.#incarnations,
      attempt: recovery.attempt,
      fatal: recovery.fatal,
      lastError: recovery.lastError,
      since: recovery.since,
    };
  }

  on<E extends RaftSupervisorEventName>(
    event: E,
    listener: (...args: RaftSupervisorEvents[E]) => void,
  ): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends RaftSupervisorEventName>(
    event: E,
    listener: (...args: RaftSupervisorEvents[E]) => void,
  ): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends RaftSupervisorEventName>(
    event: E,
    listener: (...args: RaftSupervisorEvents[E]) => void,
  ): this {
    this.#events.off(event, listener);
    return this;
  }

  /**
   * Stops retrying (aborting the back-off, the `open()` and the start under way), closes the
   * running node and releases its incarnation. Later calls reject with {@link NodeClosedError}.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------------------------------------

  #running(): Incarnation<Command, Result> {
    if (this.#closing !== undefined) throw new NodeClosedError('the Raft supervisor is closed');
    const current = this.#current;
    if (current !== undefined) return current;
    const recovery = this.#recovery as Recovery;
    throw new NodeRecoveringError(
      `the Raft node ${this.id} stopped on a fatal error and is restarting (try ${recovery.attempt}); retry shortly: ${recovery.fatal.message}`,
      { cause: recovery.fatal },
    );
  }

  /** A call's error, with the stop of its node (not of the supervisor) made retryable. */
  #translate(incarnation: Incarnation<Command, Result>, error: unknown): unknown {
    if (
      !(error instanceof NodeClosedError) ||
      this.#closing !== undefined ||
      this.#current === incarnation
    ) {
      return error;
    }
    return new NodeRecoveringError(
      `the Raft node ${this.id} stopped on a fatal error during the call and is restarting; the outcome of a proposal is unknown (a retry with the same client session is safe): ${error.message}`,
      { cause: error.cause ?? error },
    );
  }

  /** Opens and starts incarnation number `attempt`'s node; releases everything if that fails. */
  async #launch(attempt: number): Promise<Incarnation<Command, Result>> {
    const signal = this.#lifetime.signal;
    const number = this.#incarnations + 1;
    const context: RaftSupervisorOpenContext = { incarnation: number, attempt, signal };
    const options = await this.#open(context);
    if (this.#id !== undefined && options.id !== this.#id) {
      await this.#release(options, { closeTransport: true });
      throw new TypeError(
        `open() returned node ${options.id}, but this supervisor runs ${this.#id}`,
      );
    }
    this.#id = options.id;
    let node: RaftNode<Command, Result>;
    try {
      node = await RaftNode.start({
        clock: this.#clock,
        ...options,
        signal: options.signal === undefined ? signal : AbortSignal.any([options.signal, signal]),
      });
    } catch (error) {
      // A node that never started does not own its transport yet.
      await this.#release(options, { closeTransport: true });
      throw error;
    }
    this.#incarnations = number;
    return { number, node, options };
  }

  /** Makes `incarnation` the running one and watches it. */
  #run(incarnation: Incarnation<Command, Result>): void {
    const { node } = incarnation;
    this.#current = incarnation;
    this.#recovery = undefined;
    for (const event of FORWARDED_EVENTS) {
      node.on(event, (...args) => this.#emit(event, ...args));
    }
    node.on('fatal', (event) => {
      this.#failed(incarnation, event.error);
      this.#emit('fatal', event);
    });
    // A node can stop before its listeners are attached (start resolves a few turns late).
    if (node.status().closed) {
      this.#failed(
        incarnation,
        new NodeClosedError('the Raft node stopped before the supervisor watched it'),
      );
    }
  }

  #failed(incarnation: Incarnation<Command, Result>, fatal: Error): void {
    if (this.#current !== incarnation || this.#closing !== undefined) return;
    this.#current = undefined;
    this.#recovery = { fatal, since: this.#clock.wallTime(), attempt: 1, lastError: fatal };
    this.#nodeLogger(this.id).warn(
      { incarnation: incarnation.number, err: fatal },
      'the supervised raft node stopped on a fatal error; restarting it',
    );
    this.#recovering = this.#recover(incarnation).finally(() => {
      this.#recovering = undefined;
    });
  }

  /** Closes the dead incarnation, then starts new ones with back-off until one runs. */
  async #recover(dead: Incarnation<Command, Result>): Promise<void> {
    await this.#retire(dead);
    const signal = this.#lifetime.signal;
    const recovery = this.#recovery as Recovery;
    for (let attempt = 1; ; attempt++) {
      recovery.attempt = attempt;
      const waitMs = this.#backoffMs(attempt);
      if (!(await sleep(this.#clock, waitMs, signal))) return;
      let next: Incarnation<Command, Result>;
      try {
        next = await this.#launch(attempt);
      } catch (error) {
        if (signal.aborted) return;
        const failure = error instanceof Error ? error : new Error(String(error));
        recovery.lastError = failure;
        const retryInMs = this.#backoffMs(attempt + 1);
        this.#nodeLogger(this.id).warn(
          { attempt, retryInMs, err: failure },
          `restarting the raft node failed: ${failure.message}`,
        );
        this.#emit('restart-failed', { attempt, error: failure, retryInMs });
        continue;
      }
      if (signal.aborted) {
        await this.#retire(next);
        return;
      }
      this.#run(next);
      const downtimeMs = this.#clock.wallTime() - recovery.since;
      this.#nodeLogger(this.id).info(
        { incarnation: next.number, attempts: attempt, downtimeMs },
        'the supervised raft node recovered',
      );
      this.#emit('recovered', { incarnation: next.number, attempts: attempt, downtimeMs });
      return;
    }
  }

  /** The logger with the node's id bound, unless the user's logger binds `node` itself. */
  #nodeLogger(id: NodeId | undefined): Logger {
    return id === undefined ? this.#logger : bindLogger(this.#logger, { node: id });
  }

  #backoffMs(attempt: number): number {
    return Math.min(this.#maxMs, this.#initialMs * 2 ** (attempt - 1));
  }

  /** Closes an incarnation's node (which closes its transport), then releases the rest. */
  async #retire(incarnation: Incarnation<Command, Result>): Promise<void> {
    try {
      await incarnation.node.close();
    } catch (error) {
      this.#nodeLogger(this.id).warn({ err: error }, 'closing a supervised raft node failed');
    }
    await this.#release(incarnation.options, { closeTransport: false });
  }

  async #release(
    options: SupervisedNodeOptions<Command, Result>,
    how: { closeTransport: boolean },
  ): Promise<void> {
    try {
      if (how.closeTransport) await options.transport.close?.();
      await options.release?.();
    } catch (error) {
      this.#nodeLogger(options.id).warn({ err: error }, 'releasing a node incarnation failed');
    }
  }

  async #close(): Promise<void> {
    this.#lifetime.abort(new NodeClosedError('the Raft supervisor is closed'));
    const current = this.#current;
    this.#current = undefined;
    if (current !== undefined) await this.#retire(current);
    await this.#recovering;
  }

  #emit<E extends RaftSupervisorEventName>(event: E, ...args: RaftSupervisorEvents[E]): void {
    this.#events.emit(event, ...args);
  }
}

/** Waits `ms`; resolves `false` at once if `signal` aborts first. */
function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      cancel();
      resolve(false);
    };
    const cancel = clock.setTimer(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
