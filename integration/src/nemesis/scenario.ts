import type { RandomSource } from '@tsraft/core';
import type { NemesisCluster } from './nemesis-cluster.ts';
import type { NodeLine } from './node-process.ts';

/**
 * A named fault: it injects the fault, keeps it for the round's hold time, and heals it. The
 * runner measures the recovery from the moment `run` resolves, then checks the round. A scenario
 * that changes the membership restores it (every node a voter) before it resolves.
 */
export interface Scenario {
  readonly name: string;
  /** One line: what the fault does. */
  readonly summary: string;
  /** Whether it can run on `cluster` (e.g. Postgres faults need servers the harness controls). */
  appliesTo(cluster: NemesisCluster): boolean;
  /** Injects, holds and heals the fault; resolves once healed. */
  run(context: FaultContext): Promise<FaultReport>;
}

/** What a scenario gets to work with. */
export interface FaultContext {
  readonly cluster: NemesisCluster;
  /** The run's seeded randomness (targets, directions). */
  readonly random: RandomSource;
  /** The node a majority follows now (waits for one, up to 15 s). */
  leader(): Promise<string>;
  /**
   * Keeps the fault for the round's hold time, at least `minMs`. Halfway, the runner may take a
   * snapshot on some node (snapshots during faults).
   */
  hold(options?: { minMs?: number }): Promise<void>;
  /**
   * Writes a line about the fault to the run's log. Call it as the fault is injected: the first
   * note of a round marks the injection, from which the runner measures the next election.
   */
  note(text: string): void;
  /** The lines nodes printed since the round started (events and logs). */
  nodeLines(): readonly NodeLine[];
  readonly signal: AbortSignal;
}

/** What a scenario did. */
export interface FaultReport {
  /** The nodes the fault hit. */
  readonly targets: readonly string[];
  /** What exactly was done, e.g. `partition [n1] | [n2, n3]`. */
  readonly detail: string;
  /**
   * A check of the scenario's own, run after the recovery: its problems (empty: none). E.g. the
   * follower cut off during a snapshot caught up through that snapshot.
   */
  readonly verify?: () => Promise<string[]>;
}

/** A uniformly chosen element of a non-empty array. */
export function pick<T>(random: RandomSource, items: readonly T[]): T {
  if (items.length === 0) throw new RangeError('pick from an empty array');
  return items[Math.floor(random.next() * items.length)] as T;
}

/** A seeded shuffle (Fisher-Yates) into a new array. */
export function shuffle<T>(random: RandomSource, items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random.next() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}
