import type { RaftEngine } from '../engine/raft-engine.ts';
import {
  CorruptSnapshotError,
  InvariantViolationError,
  NodeClosedError,
  SnapshotExportRefusedError,
} from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { LogStore } from '../log-store.ts';
import type { Logger } from '../logger.ts';
import type { InstallSnapshot, SnapshotMeta } from '../message.ts';
import type { SnapshotStore, StoredSnapshot } from '../snapshot-store.ts';
import type { StateMachine } from '../state-machine.ts';
import type { PeerRequest, PeerResponse, Transport } from '../transport.ts';
import type { Clock } from './clock.ts';
import type { RaftNodeEvents } from './raft-node-events.ts';
import { restoreFromSnapshot, storage } from './recover-node-state.ts';
import { SerialQueue } from './serial-queue.ts';
import { SnapshotReceiver } from './snapshot-receiver.ts';
import { SnapshotSender } from './snapshot-sender.ts';

/** What the snapshot exchange needs from the node it serves. */
export interface SnapshotExchangeOptions<Command, Result> {
  readonly engine: RaftEngine;
  readonly logStore: LogStore;
  readonly stateMachine: StateMachine<Command, Result>;
  readonly snapshotStore: SnapshotStore;
  readonly transport: Transport;
  readonly logger: Logger;
  /** The node's `persist` and `purge` queue: the purge after a snapshot waits its turn there. */
  readonly logWrites: SerialQueue;
  /** Aborted when the node stops: cuts transfers and store reads short. */
  readonly lifetime: AbortSignal;
  /** Measures deadlines. */
  readonly clock: Clock;
  /** Bytes per piece of a snapshot sent to a follower. */
  readonly snapshotChunkBytes: number;
  /** Deadline of one piece of a snapshot sent to a follower. */
  readonly snapshotTimeoutMs: number;
  /** Deadline of the last piece, which the follower answers once it installed the snapshot. */
  readonly snapshotInstallTimeoutMs: number;
  /** The index the state machine has applied. */
  readonly applied: () => number;
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
  /** The node's latest snapshot is now `meta` (taken or installed). */
  readonly snapshotted: (meta: SnapshotMeta) => void;
  /** Emits the node's snapshot events. */
  readonly emit: <E extends 'snapshot' | 'snapshot-refused' | 'snapshot-corrupt'>(
    event: E,
    ...args: RaftNodeEvents[E]
  ) => void;
}

/**
 * Snapshots between a node and its stores and peers (Raft paper 7): taking one and compacting
 * the log behind it, sending the latest one to a follower that needs it (see
 * {@link SnapshotSender}), receiving one from the leader (see {@link SnapshotReceiver}), and
 * installing it when the engine says so (the first step of a {@link Ready}).
 *
 * Taking, completing a received snapshot and installing run one at a time, so a restore never
 * overlaps an export and a snapshot being installed stays the latest stored. Sending runs beside
 * them: a snapshot replaced while it is sent fails that transfer, and the engine asks again with
 * the new one. A stored snapshot found damaged (while it is read to be sent, or checked after
 * the node started) is reported at `error` with the `snapshot-corrupt` event and replaced by a
 * fresh snapshot, instead of being sent again.
 */
export class SnapshotExchange<Command, Result> {
  readonly #o: SnapshotExchangeOptions<Command, Result>;
  /** Snapshot store and state machine restore/export work, one at a time. */
  readonly #work = new SerialQueue();
  readonly #receiver: SnapshotReceiver;
  /** Followers a snapshot is being sent to: one transfer per follower at a time. */
  readonly #sending = new Set<NodeId>();
  /** The latest request the engine made for a follower while a transfer to it was under way. */
  readonly #queued = new Map<NodeId, InstallSnapshot>();
  /** Whether a fresh snapshot is being taken to replace a damaged one. */
  #replacingDamaged = false;

  constructor(options: SnapshotExchangeOptions<Command, Result>) {
    this.#o = options;
    this.#receiver = new SnapshotReceiver({
      engine: options.engine,
      store: options.snapshotStore,
      logger: options.logger,
      work: this.#work,
      kick: options.kick,
      whenCarriedOut: options.whenCarriedOut,
      refused: (event) => options.emit('snapshot-refused', event),
    });
  }

  /** Resolves once the snapshot work queued so far has settled (for `close()`). */
  idle(): Promise<void> {
    return this.#work.idle();
  }

  /**
   * Exports the state machine at its applied position, saves it to the snapshot store, then
   * drops the log up to there, but for the last `retainEntries`, from the engine and from the
   * log store (Raft paper 7): only once the snapshot is durable. Resolves with the stored
   * snapshot, or `undefined` when nothing new was applied since the latest snapshot (with
   * `replaceDamaged`: since before it, so that a damaged one is replaced). A state machine
   * that refuses the export ({@link SnapshotExportRefusedError}, also as the `cause` of a store's
   * error) is not fatal: it is logged at `error`, the log and the stored snapshots stay as they
   * were (a store never makes a snapshot it could not save whole the latest), the node goes on,
   * and this rejects with that error. Any other store failure is fatal: the node stops and this
   * rejects with its `NodeClosedError`.
   */
  take(
    store: SnapshotStore,
    options: { signal?: AbortSignal | undefined; retainEntries?: number; replaceDamaged?: boolean },
  ): Promise<StoredSnapshot | undefined> {
    const { signal, retainEntries = 0, replaceDamaged = false } = options;
    const o = this.#o;
    return this.#work.run(async () => {
      this.#throwIfStopped();
      try {
        const latest = await storage('read the latest snapshot', () => store.latest({ signal }));
        const isNew = (index: number): boolean =>
          index >= o.engine.status().firstIndex - (replaceDamaged ? 1 : 0) &&
          (latest === undefined ||
            index > latest.index ||
            (replaceDamaged && index === latest.index));
        // The export's position is at least the applied index now, and nothing else that
        // moves the latest snapshot or the log's start runs meanwhile (this queue): it is new.
        if (!isNew(o.applied())) return undefined;
        const started = o.clock.now();
        const exported = await storage('export a snapshot of the state machine', () =>
          o.stateMachine.exportSnapshot({ signal }),
        );
        const { position } = exported;
        const meta: SnapshotMeta = {
          index: position.index,
          term: position.term,
          // The configuration as of the snapshot's last entry, not the latest (Raft paper 7).
          config: o.engine.configAt(position.index),
        };
        const stored = await storage('save a snapshot', () =>
          store.save(meta, exported.chunks, { signal }),
        );
        this.#throwIfStopped();
        const logStart = o.engine.compact(meta, retainEntries);
        if (logStart !== undefined) {
          await o.logWrites.run(() =>
            storage('purge the compacted log', () => o.logStore.purge(logStart)),
          );
        }
        o.snapshotted(meta);
        o.logger.info({ index: meta.index, term: meta.term }, 'took a snapshot');
        o.emit('snapshot', {
          index: meta.index,
          term: meta.term,
          cause: 'taken',
          bytes: stored.size,
          durationMs: o.clock.now() - started,
        });
        return stored;
      } catch (error) {
        signal?.throwIfAborted();
        if (error instanceof NodeClosedError) throw error;
        const refused = exportRefusal(error);
        if (refused !== undefined && o.stopped() === undefined) {
          o.logger.error(
            { index: o.applied(), err: refused },
            `the state machine refused to export a snapshot, so none was taken and the log is kept whole: ${refused.message}`,
          );
          throw refused;
        }
        o.fail(error);
        throw o.stopped() ?? error;
      }
    });
  }

  /**
   * Sends the follower `message.to` the snapshot the engine names, in pieces, from the snapshot
   * store. Fire-and-forget: a failure (the snapshot was replaced meanwhile, the peer is down or
   * slow, it refused) is logged at `warn` and reported to the engine, which tries again later; a
   * damaged stored snapshot is replaced (see the class comment).
   */
  async send(message: InstallSnapshot): Promise<void> {
    const o = this.#o;
    const peer = message.to;
    const meta = message.snapshot;
    if (this.#sending.has(peer)) {
      // One transfer per follower: the engine's newer request goes once this one ends (it may
      // be a snapshot taken since, which the follower needs: dropping it would stall it).
      this.#queued.set(peer, message);
      return;
    }
    this.#sending.add(peer);
    let latest: StoredSnapshot | undefined;
    try {
      const store = o.snapshotStore;
      latest = await storage('read the latest snapshot', () => store.latest());
      if (latest === undefined || latest.index !== meta.index || latest.term !== meta.term) {
        throw new Error(`snapshot ${snapshotKey(meta)} is no longer the latest stored`);
      }
      o.logger.info({ peer, index: meta.index, size: latest.size }, 'sending a snapshot');
      await new SnapshotSender({
        transport: o.transport,
        store,
        pieceBytes: o.snapshotChunkBytes,
        timeoutMs: o.snapshotTimeoutMs,
        installTimeoutMs: o.snapshotInstallTimeoutMs,
        lifetime: o.lifetime,
        clock: o.clock,
      }).send(message, latest);
      o.logger.info({ peer, index: meta.index }, 'sent a snapshot');
    } catch (error) {
      if (o.stopped() !== undefined) return;
      if (error instanceof CorruptSnapshotError && latest !== undefined) {
        this.#damaged(latest, error);
      } else {
        o.logger.warn({ peer, index: meta.index, err: error }, 'sending a snapshot failed');
      }
      o.engine.reportSnapshotFailed(peer);
      o.kick();
    } finally {
      this.#sending.delete(peer);
      const queued = this.#queued.get(peer);
      this.#queued.delete(peer);
      if (queued !== undefined && o.stopped() === undefined) void this.send(queued);
    }
  }

  /** Serves one piece of a snapshot a leader sends (see {@link SnapshotReceiver}). */
  async receive(from: NodeId, request: PeerRequest & { type: 'snapshot' }): Promise<PeerResponse> {
    const o = this.#o;
    try {
      return await this.#receiver.receive(from, request.message, request.chunk);
    } catch (error) {
      if (o.stopped() === undefined) o.fail(error);
      return { type: 'rejected', reason: 'closed', message: 'the node stopped' };
    }
  }

  /**
   * Reads the latest stored snapshot whole, in the background, to check it against its checksum
   * (after the node started): a damaged one is replaced before a follower needs it.
   */
  async verifyLatest(): Promise<void> {
    const o = this.#o;
    const store = o.snapshotStore;
    let latest: StoredSnapshot | undefined;
    try {
      latest = await store.latest({ signal: o.lifetime });
      if (latest === undefined) return;
      for await (const _ of store.read(latest, { signal: o.lifetime })) {
        // Read for the check the store makes as it streams.
      }
    } catch (error) {
      if (o.stopped() !== undefined) return;
      if (error instanceof CorruptSnapshotError && latest !== undefined) {
        this.#damaged(latest, error);
      } else {
        o.logger.warn({ err: error }, 'could not check the latest snapshot after the start');
      }
    }
  }

  /**
   * Installs a snapshot the leader sent (Raft paper 7), as the first step of the Ready that
   * names it: the receiver made it the latest stored snapshot; it is restored into the state
   * machine here, and the Ready's write then records it in the log store. A crash between the
   * steps is repaired at the next start (see `recoverNodeState`). Waits for the apply loop
   * first: the restore replaces the whole state it applies to. Resolves with whether the
   * snapshot was installed: not when the node stopped meanwhile (`close()`, a fatal error), and
   * then the caller must not record it in the log store either. A state machine that refuses
   * the snapshot is fatal, with a `StorageError` that says what to do; the log stays as it was.
   */
  async install(meta: SnapshotMeta): Promise<boolean> {
    const o = this.#o;
    const store = o.snapshotStore;
    await o.drainApplying();
    if (o.stopped() !== undefined) return false;
    o.replacing(meta);
    const started = o.clock.now();
    let bytes = 0;
    try {
      await this.#work.run(async () => {
        const latest = await storage('read the latest snapshot', () => store.latest());
        if (latest === undefined || latest.index !== meta.index || latest.term !== meta.term) {
          throw new InvariantViolationError(
            `the engine installs snapshot ${snapshotKey(meta)}, but the latest stored is ${latest === undefined ? 'none' : snapshotKey(latest)}`,
          );
        }
        await restoreFromSnapshot(o.stateMachine, store, latest, o.lifetime);
        bytes = latest.size;
      });
    } catch (error) {
      // close() cut the restore short (its reads abort with the node's lifetime): not a fault.
      if (o.stopped() !== undefined) return false;
      throw error;
    }
    if (o.stopped() !== undefined) return false;
    o.logger.info({ index: meta.index, term: meta.term }, 'installed a snapshot');
    o.installed(meta);
    o.snapshotted(meta);
    o.emit('snapshot', {
      index: meta.index,
      term: meta.term,
      cause: 'installed',
      bytes,
      durationMs: o.clock.now() - started,
    });
    return true;
  }

  /** A stored snapshot is damaged: report it, and take a fresh one to replace it. */
  #damaged(snapshot: StoredSnapshot, error: CorruptSnapshotError): void {
    const o = this.#o;
    const store = o.snapshotStore;
    if (this.#replacingDamaged) return;
    this.#replacingDamaged = true;
    o.logger.error(
      { index: snapshot.index, term: snapshot.term, err: error },
      `the latest snapshot ${snapshotKey(snapshot)} in the snapshot store is damaged (${error.message}): taking a fresh one to replace it; if this repeats, check the storage of this node's database`,
    );
    o.emit('snapshot-corrupt', { index: snapshot.index, term: snapshot.term, error });
    void this.take(store, { replaceDamaged: true })
      .catch(() => {
        // A store failure stopped the node, or the state machine refused the export (logged):
        // nothing else to do here.
      })
      .finally(() => {
        this.#replacingDamaged = false;
      });
  }

  #throwIfStopped(): void {
    const stopped = this.#o.stopped();
    if (stopped !== undefined) throw stopped;
  }
}

/**
 * The {@link SnapshotExportRefusedError} that `error` is, or that it wraps as its `cause` (at any
 * depth: a store may wrap the state machine's error, and `storage` wraps the store's).
 */
function exportRefusal(error: unknown): SnapshotExportRefusedError | undefined {
  const seen = new Set<unknown>();
  for (let at = error; at instanceof Error && !seen.has(at); at = at.cause) {
    if (at instanceof SnapshotExportRefusedError) return at;
    seen.add(at);
  }
  return undefined;
}

function snapshotKey(meta: { index: number; term: number }): string {
  return `${meta.index}/${meta.term}`;
}
