import type { NodeId } from '../../log-entry.ts';
import { type RandomSource, randomInt } from '../../random.ts';
import { KvStateMachine } from '../kv-state-machine.ts';
import { type MemoryLogDurableState, MemoryLogStore } from '../memory-log-store.ts';
import { type MemorySnapshotDurableState, MemorySnapshotStore } from '../memory-snapshot-store.ts';
import type { VirtualClock } from './virtual-time.ts';

/**
 * What survives a crash of a simulated server: its log and hard state, its snapshots and its
 * state machine (which keeps its applied position with its data, as a database-backed one
 * would). Everything else lives in a {@link SimProcess} and dies with it.
 */
export class SimDisk {
  readonly id: NodeId;
  readonly log: MemoryLogDurableState = new MemoryLogStore().durable;
  readonly snapshots: MemorySnapshotDurableState = new MemorySnapshotStore().durable;
  readonly stateMachine: KvStateMachine = new KvStateMachine();

  constructor(id: NodeId) {
    this.id = id;
  }
}

/** A storage call that the simulation made fail, as a database that went away would. */
export class InjectedStorageFault extends Error {
  override name = 'InjectedStorageFault';
}

/** How a simulated disk behaves: latency and failures, drawn per storage call. */
export interface DiskFaults {
  /** Latency of a storage call before its effect, and of its acknowledgement after, in ms. */
  readonly minLatencyMs: number;
  readonly maxLatencyMs: number;
  /** Probability that a call is slow (a stalled disk, a lock wait): `slowMs` ms more. */
  readonly slow: number;
  readonly slowMs: number;
  /** Probability that a call fails (`InjectedStorageFault`), half before and half after its effect. */
  readonly fail: number;
  /** Probability that the process crashes while a call is in flight (before or after its effect). */
  readonly crash: number;
}

export const CALM_DISK: DiskFaults = Object.freeze({
  minLatencyMs: 0,
  maxLatencyMs: 1,
  slow: 0,
  slowMs: 0,
  fail: 0,
  crash: 0,
});

/** Counts what a {@link SimProcess}'s disk did to it, over every process of a run. */
export interface DiskCounters {
  calls: number;
  failures: number;
  crashes: number;
  slow: number;
}

/**
 * One life of a simulated server process: a virtual clock, and the gate every storage call of
 * the process passes through. A crash stops the clock and the gate: calls in flight never
 * settle, new ones never start, and nothing the process does afterwards reaches its disk or the
 * network. The effect of a call is atomic, at a random point of its latency: a crash or a
 * failure before it leaves the disk unchanged, one after it leaves the effect durable but
 * unacknowledged (unknown outcome).
 */
export class SimProcess {
  readonly clock: VirtualClock;
  readonly #random: RandomSource;
  readonly #counters: DiskCounters;
  readonly #onCrashPoint: (process: SimProcess) => void;
  faults: DiskFaults;
  #alive = true;
  /** Storage calls under way. */
  inFlight = 0;
  /** Extra latency of each state machine `apply` (a slow application database). Default 0. */
  applyStallMs = 0;

  constructor(options: {
    clock: VirtualClock;
    random: RandomSource;
    faults: DiskFaults;
    counters: DiskCounters;
    /** Asked to crash this process now, from inside a storage call (a crash point). */
    onCrashPoint: (process: SimProcess) => void;
  }) {
    this.clock = options.clock;
    this.#random = options.random;
    this.faults = options.faults;
    this.#counters = options.counters;
    this.#onCrashPoint = options.onCrashPoint;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** The process dies where it stands. */
  kill(): void {
    this.#alive = false;
    this.clock.stop();
  }

  /** Waits `ms` virtual ms on this process's clock; never settles if the process dies. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.clock.setTimer(resolve, ms);
    });
  }

  /** Runs `effect` as one storage call: latency, the effect, latency, with faults as drawn. */
  async io<T>(effect: () => T | Promise<T>): Promise<T> {
    if (!this.#alive) return new Promise<T>(() => {});
    const f = this.faults;
    const c = this.#counters;
    c.calls++;
    let before = randomInt(this.#random, f.minLatencyMs, f.maxLatencyMs + 1);
    const after = randomInt(this.#random, f.minLatencyMs, f.maxLatencyMs + 1);
    if (this.#random.next() < f.slow) {
      c.slow++;
      before += f.slowMs;
    }
    const failure = this.#random.next() < f.fail ? this.#pickSide() : undefined;
    const crash = this.#random.next() < f.crash ? this.#pickSide() : undefined;
    this.inFlight++;
    try {
      await this.sleep(before);
      if (crash === 'before') return this.#crashHere<T>();
      if (failure === 'before') {
        c.failures++;
        throw new InjectedStorageFault('the database connection was lost before the call');
      }
      const result = await effect();
      if (crash === 'after') return this.#crashHere<T>();
      if (failure === 'after') {
        c.failures++;
        throw new InjectedStorageFault(
          'the database connection was lost before the call was acknowledged',
        );
      }
      await this.sleep(after);
      return result;
    } finally {
      this.inFlight--;
    }
  }

  #pickSide(): 'before' | 'after' {
    return this.#random.next() < 0.5 ? 'before' : 'after';
  }

  #crashHere<T>(): Promise<T> {
    this.#counters.crashes++;
    this.#onCrashPoint(this);
    return new Promise<T>(() => {});
  }
}
