import type { NodeId } from '../../log-entry.ts';
import type { ScheduledNode } from './figure-8-schedule.ts';

/** What the schedule does to a cluster of three servers. */
export interface InstallDuringApplyCluster {
  /** The running nodes. */
  nodes(): readonly ScheduledNode[];
  /** Splits the servers into groups that cannot talk to each other (replacing any partition). */
  partition(groups: readonly (readonly NodeId[])[]): void;
  heal(): void;
  /** A client writes through `id`; the outcome of the write stays unknown. */
  write(id: NodeId): void;
  /** `id` takes a snapshot and compacts its whole log behind it. */
  snapshot(id: NodeId): void;
  /** Each `apply` of the state machine of `id`'s process takes `ms` longer. */
  stallApplies(id: NodeId, ms: number): void;
  /** The index the (durable) state machine of `id` holds. */
  applied(id: NodeId): number;
  /** `close()` on `id`'s process in `ms`, then a new process on its disk. */
  restartGracefully(id: NodeId, ms: number): void;
}

const WRITES = 5;
const STALL_MS = 1_000;

type Stage =
  | { readonly kind: 'settle' }
  | { readonly kind: 'backlog'; readonly target: number }
  | { readonly kind: 'compact'; readonly target: number }
  | { readonly kind: 'compacted' }
  | { readonly kind: 'install'; readonly snapshotIndex: number }
  | { readonly kind: 'done' };

/**
 * A follower restarted gracefully while it installs a snapshot and its apply loop is busy, played
 * with real nodes on three servers, after every event of a simulation: the follower's state
 * machine applies slowly, so committed entries wait to be applied; it is cut off, the leader
 * writes on and compacts its whole log behind a snapshot; once the network heals, the follower
 * receives the snapshot, its engine hands it over for install, and the install waits for the
 * apply loop; then `close()` comes. The install must end without recording the snapshot in the
 * log store (its state machine does not hold it yet): the simulation's snapshot install order
 * check fails otherwise. A step that does not come within `stepMs` leaves the schedule unplayed.
 */
export class InstallDuringApplySchedule {
  readonly #cluster: InstallDuringApplyCluster;
  readonly #stepMs: number;
  #stage: Stage = { kind: 'settle' };
  #stageSince = 0;
  #leader: NodeId | undefined;
  #follower: NodeId | undefined;
  #played = false;

  constructor(cluster: InstallDuringApplyCluster, options: { stepMs: number }) {
    this.#cluster = cluster;
    this.#stepMs = options.stepMs;
  }

  /** Whether `close()` met the install while it waited for the apply loop. */
  get played(): boolean {
    return this.#played;
  }

  /** Advances the schedule as far as the cluster's state allows; call after every event. */
  afterEvent(now: number): void {
    if (this.#stage.kind !== 'settle' && this.#stage.kind !== 'done') {
      if (now - this.#stageSince > this.#stepMs) this.#finish(false);
    }
    const before = this.#stage;
    this.#advance();
    if (this.#stage !== before) this.#stageSince = now;
  }

  #advance(): void {
    const c = this.#cluster;
    const nodes = new Map(c.nodes().map((n) => [n.status().id, n.status()]));
    const stage = this.#stage;
    switch (stage.kind) {
      case 'settle': {
        if (nodes.size !== 3) return;
        const leader = [...nodes.values()].find((s) => s.role === 'leader');
        if (leader === undefined || leader.commitIndex !== leader.lastIndex) return;
        for (const s of nodes.values()) if (s.commitIndex !== leader.lastIndex) return;
        this.#leader = leader.id;
        this.#follower = [...nodes.keys()].filter((id) => id !== leader.id).sort()[0] as NodeId;
        c.stallApplies(this.#follower, STALL_MS);
        for (let i = 0; i < WRITES; i++) c.write(leader.id);
        this.#stage = { kind: 'backlog', target: leader.lastIndex + WRITES };
        return;
      }
      case 'backlog': {
        // The follower learned that the writes committed, and applies them slowly.
        const follower = nodes.get(this.#follower as NodeId);
        if (follower === undefined || follower.commitIndex < stage.target) return;
        if (c.applied(follower.id) >= stage.target) return;
        c.partition([[follower.id], this.#others(follower.id, nodes)]);
        for (let i = 0; i < WRITES; i++) c.write(this.#leader as NodeId);
        this.#stage = { kind: 'compact', target: stage.target + WRITES };
        return;
      }
      case 'compact': {
        const leader = nodes.get(this.#leader as NodeId);
        if (leader?.role !== 'leader') {
          this.#finish(false);
          return;
        }
        if (c.applied(leader.id) < stage.target) return;
        c.snapshot(leader.id);
        this.#stage = { kind: 'compacted' };
        return;
      }
      case 'compacted': {
        const leader = nodes.get(this.#leader as NodeId);
        const follower = nodes.get(this.#follower as NodeId);
        if (leader === undefined || follower === undefined) return;
        // The follower now needs the snapshot: the entries after its log are compacted away.
        if (leader.firstIndex <= follower.lastIndex + 1) return;
        c.heal();
        this.#stage = { kind: 'install', snapshotIndex: leader.firstIndex - 1 };
        return;
      }
      case 'install': {
        const follower = nodes.get(this.#follower as NodeId);
        // Its engine took the snapshot (the install is handed to the node in the next event);
        // the state machine still applies the entries before it.
        if (follower === undefined || follower.commitIndex < stage.snapshotIndex) return;
        const waiting = c.applied(follower.id) < stage.snapshotIndex;
        c.restartGracefully(follower.id, 1);
        this.#finish(waiting);
        return;
      }
      case 'done':
        return;
    }
  }

  #finish(played: boolean): void {
    this.#played = played;
    this.#stage = { kind: 'done' };
    this.#cluster.heal();
  }

  #others(id: NodeId, nodes: ReadonlyMap<NodeId, unknown>): NodeId[] {
    return [...nodes.keys()].filter((other) => other !== id);
  }
}
