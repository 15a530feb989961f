import type { ClusterConfig } from '../../configuration.ts';
import type { EngineTuning } from '../../engine/engine-options.ts';
import { RaftEngine } from '../../engine/raft-engine.ts';
import type { Ready } from '../../engine/ready.ts';
import type { LogEntry, NodeId } from '../../log-entry.ts';
import type { Message, SnapshotMeta } from '../../message.ts';
import type { RandomSource } from '../../random.ts';
import { type CommandCodec, jsonCodec, toAppliedEntry } from '../../runtime/command-codec.ts';
import type { CommandResult } from '../../state-machine.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../kv-state-machine.ts';
import { type MemoryLogDurableState, MemoryLogStore } from '../memory-log-store.ts';
import { MemorySnapshotStore } from '../memory-snapshot-store.ts';

/** How simulated clients encode commands: the runtime's default codec. */
export const simCodec: CommandCodec<KvCommand, KvResult> = jsonCodec();

async function* chunksOf(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/**
 * One simulated server: a Raft engine over the test kit's memory stores and key/value state
 * machine. The stores and the state machine are its durable state; a crash throws away the
 * engine and everything in flight, and a restart rebuilds the engine from the stores alone.
 */
export class SimNode {
  readonly id: NodeId;
  readonly #config: ClusterConfig;
  readonly #tuning: Partial<EngineTuning> | undefined;
  readonly durableLog: MemoryLogDurableState;
  readonly stateMachine: KvStateMachine = new KvStateMachine();
  readonly snapshots: MemorySnapshotStore = new MemorySnapshotStore();
  #logStore: MemoryLogStore;
  engine: RaftEngine | undefined;
  /** Increments at every crash: events addressed to an earlier life are ignored. */
  epoch = 0;
  /** The Ready being persisted, if any. */
  busy: Ready | undefined;
  appliedIndex = 0;
  /** Readies taken from the engine in this life. */
  readiesTaken = 0;
  /**
   * InstallSnapshot requests received but not yet answered: a request is answered once the
   * Ready numbered `after` (the first taken after it arrived) is carried out.
   */
  snapshotRequests: { message: Message & { type: 'snapshot' }; after: number }[] = [];
  /** Snapshot data received with InstallSnapshot messages, by `index:term`. */
  readonly receivedSnapshots: Map<string, Uint8Array> = new Map();

  constructor(options: {
    id: NodeId;
    config: ClusterConfig;
    tuning?: Partial<EngineTuning>;
  }) {
    this.id = options.id;
    this.#config = options.config;
    this.#tuning = options.tuning;
    this.#logStore = new MemoryLogStore();
    this.durableLog = this.#logStore.durable;
  }

  get alive(): boolean {
    return this.engine !== undefined;
  }

  /** Builds the engine from the durable state alone, as a restarted process would. */
  async start(random: RandomSource): Promise<void> {
    this.#logStore = new MemoryLogStore({ durable: this.durableLog });
    const state = await this.#logStore.load();
    const entries =
      state.lastIndex > state.snapshot.index
        ? await this.#logStore.entries(state.snapshot.index + 1, state.lastIndex + 1, {
            maxBytes: Number.POSITIVE_INFINITY,
          })
        : [];
    const snapshot = await this.snapshots.latest();
    const applied = await this.stateMachine.lastApplied();
    this.appliedIndex = applied.index;
    this.engine = new RaftEngine({
      id: this.id,
      config: snapshot?.config ?? this.#config,
      hardState: state.hardState,
      snapshot: state.snapshot,
      entries,
      applied: applied.index,
      random,
      ...(this.#tuning === undefined ? {} : { tuning: this.#tuning }),
    });
  }

  /**
   * Crashes the node. With `keepWrite`, the write in flight reached the disk before the crash
   * (durable, but never acknowledged); otherwise it is lost.
   */
  async crash(keepWrite: boolean): Promise<void> {
    const inFlight = this.busy;
    this.engine = undefined;
    this.busy = undefined;
    this.epoch++;
    this.readiesTaken = 0;
    this.receivedSnapshots.clear();
    if (keepWrite && inFlight?.write !== undefined && inFlight.snapshot === undefined) {
      await this.#logStore.persist(inFlight.write);
    }
  }

  /** Installs a received snapshot (Ready step 1) and persists the write (step 2). */
  async persist(ready: Ready): Promise<void> {
    if (ready.snapshot !== undefined) {
      const key = `${ready.snapshot.index}:${ready.snapshot.term}`;
      const data = this.receivedSnapshots.get(key);
      if (data === undefined) throw new Error(`${this.id}: snapshot ${key} data missing`);
      this.receivedSnapshots.clear();
      const position = { index: ready.snapshot.index, term: ready.snapshot.term };
      await this.stateMachine.restoreSnapshot(position, chunksOf(data));
      await this.snapshots.save(ready.snapshot, chunksOf(data));
      this.appliedIndex = ready.snapshot.index;
    }
    if (ready.write !== undefined) await this.#logStore.persist(ready.write);
  }

  /** Applies committed entries (Ready step 4) and returns one result per entry. */
  async apply(entries: readonly LogEntry[]): Promise<(CommandResult<KvResult> | undefined)[]> {
    if (entries.length === 0) return [];
    const results = await this.stateMachine.apply(
      entries.map((entry) => toAppliedEntry(simCodec, entry)),
    );
    this.appliedIndex = entries.at(-1)?.index ?? this.appliedIndex;
    return results;
  }

  /** Takes a snapshot at the applied index and compacts the log up to it. */
  async snapshotAndCompact(): Promise<void> {
    const engine = this.engine;
    if (engine === undefined) return;
    const { position, chunks } = await this.stateMachine.exportSnapshot();
    const meta: SnapshotMeta = { ...position, config: engine.configAt(position.index) };
    await this.snapshots.save(meta, chunks);
    engine.compact(meta);
    await this.#logStore.purge(position);
  }

  /** The bytes of the latest snapshot, if it is the one `meta` names. */
  async snapshotData(meta: SnapshotMeta): Promise<Uint8Array | undefined> {
    const latest = await this.snapshots.latest();
    if (latest === undefined || latest.index !== meta.index || latest.term !== meta.term) {
      return undefined;
    }
    return collect(this.snapshots.read(latest));
  }
}
