import type { EngineStatus } from '../../engine/raft-engine.ts';
import type { LogEntry, NodeId } from '../../log-entry.ts';

/** What a scripted schedule reads of a running node (a `RaftEngine` is one). */
export interface ScheduledNode {
  status(): Pick<
    EngineStatus,
    'id' | 'role' | 'term' | 'commitIndex' | 'firstIndex' | 'lastIndex' | 'progress'
  >;
  entry(index: number): LogEntry | undefined;
}

/** What every scripted schedule does to its cluster. */
export interface ScheduledCluster {
  /** The running nodes. */
  nodes(): readonly ScheduledNode[];
  /** Splits the servers into groups that cannot talk to each other (replacing any partition). */
  partition(groups: readonly (readonly NodeId[])[]): void;
  heal(): void;
  /** A client writes through `id`; the outcome of the write stays unknown. */
  write(id: NodeId): void;
}

/** The first stage of every schedule (waiting for the cluster to settle), and the last. */
type Bound = { readonly kind: 'settle' } | { readonly kind: 'done' };

/**
 * The stages of a scripted schedule, which the simulator advances after every event: the
 * schedule waits for its cluster to settle, then moves from stage to stage as the cluster's
 * state allows (`advance`, which reads {@link current} and calls {@link moveTo} or
 * {@link finish}), and ends played or not. A stage after settling that does not move on within
 * `stepMs` of virtual time ends the schedule unplayed (the servers' timing is random). Ending
 * heals the network.
 */
export class ScheduleStages<Stage extends { readonly kind: string }> {
  readonly #stepMs: number;
  readonly #advance: () => void;
  readonly #heal: () => void;
  #current: Stage | Bound = { kind: 'settle' };
  #since = 0;
  #played = false;

  constructor(options: { stepMs: number; advance: () => void; heal: () => void }) {
    this.#stepMs = options.stepMs;
    this.#advance = options.advance;
    this.#heal = options.heal;
  }

  get current(): Stage | Bound {
    return this.#current;
  }

  /** Whether the schedule ended played (what that means is the schedule's to say). */
  get played(): boolean {
    return this.#played;
  }

  moveTo(next: Stage): void {
    this.#current = next;
  }

  /** Ends the schedule, played or not, and heals the network. */
  finish(played: boolean): void {
    this.#played = played;
    this.#current = { kind: 'done' };
    this.#heal();
  }

  /** Advances the schedule as far as the cluster's state allows; call after every event. */
  afterEvent(now: number): void {
    const { kind } = this.#current;
    if (kind !== 'settle' && kind !== 'done' && now - this.#since > this.#stepMs) {
      this.finish(false);
    }
    const before = this.#current;
    this.#advance();
    if (this.#current !== before) this.#since = now;
  }
}
