import type { RaftEngine } from '../engine/raft-engine.ts';
import { InvariantViolationError, NodeClosedError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import type { Logger } from '../logger.ts';
import type { InstallSnapshot, SnapshotMeta } from '../message.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { StateMachine } from '../state-machine.ts';
import type { PeerRequest, PeerResponse, Transport } from '../transport.ts';
import { linkedSignal } from './abortable.ts';
import { describeResponse } from './peer-response.ts';
import { storage } from './recover-node-state.ts';
import { SerialQueue } from './serial-queue.ts';

/** Received snapshot data kept until the engine installs it; older ones are dropped. */
const MAX_RECEIVED_SNAPSHOTS = 4;

/** What the snapshot exchange needs from the node it serves. */
export interface SnapshotExchangeOptions<Command, Result> {
  readonly engine: RaftEngine;
  readonly logStore: LogStore;
  readonly stateMachine: StateMachine<Command, Result>;
  readonly snapshotStore: SnapshotStore | undefined;
  readonly transport: Transport;
  readonly logger: Logger;
  /** The node's `persist` and `purge` queue: the purge after a snapshot waits its turn there. */
  readonly logWrites: SerialQueue;
  /** Aborted when the node stops: cuts transfers and store reads short. */
  readonly lifetime: AbortSignal;
  /** Deadline of one whole-snapshot transfer to a peer. */
  readonly snapshotTimeoutMs: number;
  /** The node's reason to refuse work once it stopped, or `undefined` while it runs. */
  readonly stopped: () => NodeClosedError | undefined;
  /** Stops the node on a fatal error (a store failed, an invariant broke). */
  readonly fail: (error: unknown) => void;
  /** Makes sure the consensus loop runs (the engine has new input). */
  readonly kick: () => void;
  /**
   * Resolves once every input stepped into the engine so far is carried out (persisted, sent,
   * advanced); rejects if the node stops first.
   */
  readonly whenCarriedOut: () => Promise<void>;
  /** Resolves once the apply loop is idle: a restore replaces the state the loop applies to. */
  readonly drainApplying: () => Promise<void>;
  /** A received snapshot is about to replace the state machine up to `meta.index`. */
  readonly replacing: (meta: SnapshotMeta) => void;
  /** The state machine now holds the snapshot: its applied index is `meta.index`. */
  readonly installed: (meta: SnapshotMeta) => void;
}

/**
 * Snapshots between a node and its stores and peers (Raft paper 7): taking one and compacting
 * the log behind it, sending the latest one to a follower that needs it, receiving one from the
 * leader, and installing it when the engine says so (the first step of a {@link Ready}).
 *
 * All snapshot store and state machine export/restore work runs one task at a time, so a
 * snapshot being read to be sent is never replaced under the reader, and a restore never
 * overlaps an export. A snapshot travels whole in one `snapshot` request; its receiver answers
 * only once the engine handled it durably (see {@link receive}).
 */
export class SnapshotExchange<Command, Result> {
  readonly #o: SnapshotExchangeOptions<Command, Result>;
  /** Snapshot store and state machine restore/export work, one at a time. */
  readonly #work = new SerialQueue();
  /** Data of InstallSnapshot requests received, by `index/term`, until the engine installs one. */
  readonly #received = new Map<string, Uint8Array>();

  constructor(options: SnapshotExchangeOptions<Command, Result>) {
    this.#o = options;
  }

  /** Resolves once the snapshot work queued so far has settled (for `close()`). */
  idle(): Promise<void> {
    return this.#work.idle();
  }

  /**
   * Exports the state machine at its applied position, saves it to the snapshot store, then
   * drops the log up to there from the engine and from the log store (Raft paper 7). Resolves
   * with the stored snapshot, or `undefined` when nothing new was applied since the log's start.
   * A store failure is fatal: the node stops and this rejects with its `NodeClosedError`.
   */
  take(store: SnapshotStore, signal: AbortSignal | undefined): Promise<StoredSnapshot | undefined> {
    const o = this.#o;
    return this.#work.run(async () => {
      this.#throwIfStopped();
      try {
        const exported = await storage('export a snapshot of the state machine', () =>
          o.stateMachine.exportSnapshot({ signal }),
        );
        const { position } = exported;
        const status = o.engine.status();
        if (position.index < status.firstIndex) return undefined;
        const meta: SnapshotMeta = {
          index: position.index,
          term: position.term,
          config: status.config,
        };
        const stored = await storage('save a snapshot', () =>
          store.save(meta, exported.chunks, { signal }),
        );
        this.#throwIfStopped();
        o.engine.compact(meta);
        await o.logWrites.run(() =>
          storage('purge the compacted log', () => o.logStore.purge(position)),
        );
        o.logger.info({ index: meta.index, term: meta.term }, 'took a snapshot');
        return stored;
      } catch (error) {
        signal?.throwIfAborted();
        if (error instanceof NodeClosedError) throw error;
        o.fail(error);
        throw o.stopped() ?? error;
      }
    });
  }

  /**
   * Sends the follower `message.to` the whole snapshot the engine names, read from the snapshot
   * store. Fire-and-forget: a failure (the snapshot was replaced meanwhile, the peer is down or
   * slow) is logged at `warn` and reported to the engine, which tries again later.
   */
  async send(message: InstallSnapshot): Promise<void> {
    const o = this.#o;
    const peer = message.to;
    const meta = message.snapshot;
    try {
      const store = o.snapshotStore;
      if (store === undefined) {
        throw new Error('a follower needs a snapshot, but this node has no snapshot store');
      }
      const data = await this.#work.run(async () => {
        const latest = await storage('read the latest snapshot', () => store.latest());
        if (latest === undefined || latest.index !== meta.index || latest.term !== meta.term) {
          throw new Error(`snapshot ${snapshotKey(meta)} is no longer the latest stored`);
        }
        return storage('read a snapshot', () =>
          collect(store.read(latest, { signal: o.lifetime })),
        );
      });
      using deadline = linkedSignal({
        parents: [o.lifetime],
        timeoutMs: o.snapshotTimeoutMs,
      });
      const response = await o.transport.request(
        peer,
        { type: 'snapshot', message, data },
        { signal: deadline.signal },
      );
      if (response.type !== 'ack')
        throw new Error(`${peer} answered ${describeResponse(response)}`);
    } catch (error) {
      if (o.stopped() !== undefined) return;
      o.logger.warn({ peer, index: meta.index, err: error }, 'sending a snapshot failed');
      o.engine.reportSnapshotFailed(peer);
      o.kick();
    }
  }

  /**
   * Serves an InstallSnapshot request: keeps its data for {@link install}, steps the message
   * into the engine, and answers only once the engine has handled it durably (installed, or
   * found not needed): a crash before that fails the sender's request, so the leader sends the
   * snapshot again instead of waiting for it forever.
   */
  async receive(from: NodeId, request: PeerRequest & { type: 'snapshot' }): Promise<PeerResponse> {
    const o = this.#o;
    const { message, data } = request;
    if (message.from !== from) return { type: 'ack' };
    this.#received.set(snapshotKey(message.snapshot), data);
    while (this.#received.size > MAX_RECEIVED_SNAPSHOTS) {
      const oldest = this.#received.keys().next().value as string;
      this.#received.delete(oldest);
    }
    try {
      o.engine.step(message);
      await o.whenCarriedOut();
    } catch (error) {
      if (o.stopped() === undefined) o.fail(error);
      return { type: 'rejected', reason: 'closed', message: 'the node stopped' };
    }
    return { type: 'ack' };
  }

  /**
   * Installs a snapshot the leader sent (Raft paper 7), as the first step of the Ready that
   * names it: saved to the snapshot store first, then restored into the state machine; the
   * Ready's write then records it in the log store. A crash between the steps is repaired at
   * the next start (see `recoverNodeState`). Waits for the apply loop first: the restore
   * replaces the whole state it applies to.
   */
  async install(meta: SnapshotMeta): Promise<void> {
    const o = this.#o;
    const key = snapshotKey(meta);
    const data = this.#received.get(key);
    if (data === undefined) {
      throw new InvariantViolationError(
        `the engine installs snapshot ${key}, but no data for it was received`,
      );
    }
    for (const [other, _] of this.#received) {
      const index = Number(other.split('/')[0]);
      if (index <= meta.index) this.#received.delete(other);
    }
    await o.drainApplying();
    if (o.stopped() !== undefined) return;
    o.replacing(meta);
    const position = { index: meta.index, term: meta.term };
    await this.#work.run(async () => {
      const store = o.snapshotStore;
      if (store !== undefined) {
        await storage('save the received snapshot', () => store.save(meta, chunksOf(data)));
      }
      await storage('restore the state machine from a snapshot', () =>
        o.stateMachine.restoreSnapshot(position, chunksOf(data)),
      );
    });
    o.logger.info({ index: meta.index, term: meta.term }, 'installed a snapshot');
    o.installed(meta);
  }

  #throwIfStopped(): void {
    const stopped = this.#o.stopped();
    if (stopped !== undefined) throw stopped;
  }
}

function snapshotKey(meta: { index: number; term: number }): string {
  return `${meta.index}/${meta.term}`;
}

async function* chunksOf(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    parts.push(chunk);
    size += chunk.byteLength;
  }
  const whole = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    whole.set(part, offset);
    offset += part.byteLength;
  }
  return whole;
}
