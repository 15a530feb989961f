import type { NodeId } from '../../log-entry.ts';
import { type ScheduledCluster, ScheduleStages } from './scripted-schedule.ts';

/** What the schedule does to a cluster of three servers. */
export interface InstallDuringApplyCluster extends ScheduledCluster {
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
  | { readonly kind: 'backlog'; readonly target: number }
  | { readonly kind: 'compact'; readonly target: number }
  | { readonly kind: 'compacted' }
  | { readonly kind: 'install'; readonly snapshotIndex: number };

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
  readonly #stages: ScheduleStages<Stage>;
  #leader: NodeId | undefined;
  #follower: NodeId | undefined;

  constructor(cluster: InstallDuringApplyCluster, options: { stepMs: number }) {
    this.#cluster = cluster;
    this.#stages = new ScheduleStages({
      stepMs: options.stepMs,
      advance: () => this.#advance(),
      heal: () => cluster.heal(),
    });
  }

  /** Whether `close()` met the install while it waited for the apply loop. */
  get played(): boolean {
    return this.#stages.played;
  }

  /** Advances the schedule as far as the cluster's state allows; call after every event. */
  afterEvent(now: number): void {
    this.#stages.afterEvent(now);
  }

  #advance(): void {
    const c = this.#cluster;
    const nodes = new Map(c.nodes().map((n) => [n.status().id, n.status()]));
    const stage = this.#stages.current;
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
        this.#stages.moveTo({ kind: 'backlog', target: leader.lastIndex + WRITES });
        return;
      }
      case 'backlog': {
        // The follower learned that the writes committed, and applies them slowly.
        const follower = nodes.get(this.#follower as NodeId);
        if (follower === undefined || follower.commitIndex < stage.target) return;
        if (c.applied(follower.id) >= stage.target) return;
        c.partition([[follower.id], this.#others(follower.id, nodes)]);
        for (let i = 0; i < WRITES; i++) c.write(this.#leader as NodeId);
        this.#stages.moveTo({ kind: 'compact', target: stage.target + WRITES });
        return;
      }
      case 'compact': {
        const leader = nodes.get(this.#leader as NodeId);
        if (leader?.role !== 'leader') {
          this.#stages.finish(false);
          return;
        }
        if (c.applied(leader.id) < stage.target) return;
        c.snapshot(leader.id);
        this.#stages.moveTo({ kind: 'compacted' });
        return;
      }
      case 'compacted': {
        const leader = nodes.get(this.#leader as NodeId);
        const follower = nodes.get(this.#follower as NodeId);
        if (leader === undefined || follower === undefined) return;
        // The follower now needs the snapshot: the entries after its log are compacted away.
        if (leader.firstIndex <= follower.lastIndex + 1) return;
        c.heal();
        this.#stages.moveTo({ kind: 'install', snapshotIndex: leader.firstIndex - 1 });
        return;
      }
      case 'install': {
        const follower = nodes.get(this.#follower as NodeId);
        // Its engine took the snapshot (the install is handed to the node in the next event);
        // the state machine still applies the entries before it.
        if (follower === undefined || follower.commitIndex < stage.snapshotIndex) return;
        const waiting = c.applied(follower.id) < stage.snapshotIndex;
        c.restartGracefully(follower.id, 1);
        this.#stages.finish(waiting);
        return;
      }
      case 'done':
        return;
    }
  }

  #others(id: NodeId, nodes: ReadonlyMap<NodeId, unknown>): NodeId[] {
    return [...nodes.keys()].filter((other) => other !== id);
  }
}
