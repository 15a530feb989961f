import type { LogEntry, LogPosition } from '../../log-entry.ts';
import type { LogStore, LogStoreState, LogWrite } from '../../log-store.ts';
import type { SnapshotMeta } from '../../message.ts';
import type { PartialSnapshot, SnapshotStore, StoredSnapshot } from '../../snapshot-store.ts';
import type { AppliedEntry, CommandResult, StateMachine } from '../../state-machine.ts';
import type { KvCommand, KvResult } from '../kv-state-machine.ts';
import { MemoryLogStore } from '../memory-log-store.ts';
import { MemorySnapshotStore } from '../memory-snapshot-store.ts';
import type { SimDisk, SimProcess } from './sim-process.ts';

/**
 * The log store of one process over its server's {@link SimDisk}: the test kit's memory store,
 * every call gated by the process ({@link SimProcess.io}: latency, failures, crash points).
 */
export class SimLogStore implements LogStore {
  readonly #store: MemoryLogStore;
  readonly #process: SimProcess;

  constructor(disk: SimDisk, process: SimProcess) {
    this.#store = new MemoryLogStore({ durable: disk.log });
    this.#process = process;
  }

  load(options?: { signal?: AbortSignal }): Promise<LogStoreState> {
    return this.#process.io(() => this.#store.load(options));
  }

  entries(
    from: number,
    to: number,
    options?: { maxBytes?: number; signal?: AbortSignal },
  ): Promise<LogEntry[]> {
    return this.#process.io(() => this.#store.entries(from, to, options));
  }

  persist(write: LogWrite, options?: { signal?: AbortSignal }): Promise<void> {
    return this.#process.io(() => this.#store.persist(write, options));
  }

  purge(upTo: LogPosition, options?: { signal?: AbortSignal }): Promise<void> {
    return this.#process.io(() => this.#store.purge(upTo, options));
  }
}

/** The snapshot store of one process over its server's {@link SimDisk}, gated like {@link SimLogStore}. */
export class SimSnapshotStore implements SnapshotStore {
  readonly #store: MemorySnapshotStore;
  readonly #process: SimProcess;
  readonly #received: () => void;

  /** `received` hears of each snapshot received whole the moment it becomes the latest stored. */
  constructor(disk: SimDisk, process: SimProcess, received: () => void = () => {}) {
    this.#store = new MemorySnapshotStore({ durable: disk.snapshots });
    this.#process = process;
    this.#received = received;
  }

  latest(options?: { signal?: AbortSignal }): Promise<StoredSnapshot | undefined> {
    return this.#process.io(() => this.#store.latest(options));
  }

  save(
    meta: SnapshotMeta,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<StoredSnapshot> {
    return this.#process.io(() => this.#store.save(meta, chunks, options));
  }

  /** Each chunk is a storage call of its own. */
  async *read(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): AsyncIterable<Uint8Array> {
    for await (const chunk of this.#store.read(snapshot, options)) {
      yield await this.#process.io(() => chunk);
    }
  }

  partial(options?: { signal?: AbortSignal }): Promise<PartialSnapshot | undefined> {
    return this.#process.io(() => this.#store.partial(options));
  }

  beginPartial(
    snapshot: StoredSnapshot,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot> {
    return this.#process.io(() => this.#store.beginPartial(snapshot, options));
  }

  appendPartial(
    offset: number,
    data: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<PartialSnapshot> {
    return this.#process.io(() => this.#store.appendPartial(offset, data, options));
  }

  completePartial(options?: { signal?: AbortSignal }): Promise<StoredSnapshot> {
    return this.#process.io(async () => {
      const stored = await this.#store.completePartial(options);
      this.#received();
      return stored;
    });
  }
}

/**
 * The state machine of one process: its server's durable key/value machine, every call gated
 * like {@link SimLogStore}. `applied` hears of each batch the moment it takes effect.
 */
export class SimStateMachine implements StateMachine<KvCommand, KvResult> {
  readonly #disk: SimDisk;
  readonly #process: SimProcess;
  readonly #applied: (entries: readonly AppliedEntry<KvCommand>[]) => void;

  constructor(
    disk: SimDisk,
    process: SimProcess,
    applied: (entries: readonly AppliedEntry<KvCommand>[]) => void,
  ) {
    this.#disk = disk;
    this.#process = process;
    this.#applied = applied;
  }

  lastApplied(options?: { signal?: AbortSignal }): Promise<LogPosition> {
    return this.#process.io(() => this.#disk.stateMachine.lastApplied(options));
  }

  apply(
    entries: readonly AppliedEntry<KvCommand>[],
    options?: { signal?: AbortSignal },
  ): Promise<(CommandResult<KvResult> | undefined)[]> {
    const process = this.#process;
    return process.io(async () => {
      if (process.applyStallMs > 0) await process.sleep(process.applyStallMs);
      const results = await this.#disk.stateMachine.apply(entries, options);
      this.#applied(entries);
      return results;
    });
  }

  exportSnapshot(options?: {
    signal?: AbortSignal;
  }): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }> {
    return this.#process.io(() => this.#disk.stateMachine.exportSnapshot(options));
  }

  restoreSnapshot(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<void> {
    return this.#process.io(() =>
      this.#disk.stateMachine.restoreSnapshot(position, chunks, options),
    );
  }
}
