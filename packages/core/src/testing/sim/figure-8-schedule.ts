import type { NodeId } from '../../log-entry.ts';
import { type ScheduledCluster, type ScheduledNode, ScheduleStages } from './scripted-schedule.ts';

/** What the schedule does to a cluster of five servers. */
export type Figure8Cluster = ScheduledCluster;

type Stage =
  | { readonly kind: 'replicate-to-s2'; readonly s1: NodeId; readonly s2: NodeId }
  | { readonly kind: 'elect-s5'; readonly s1: NodeId; readonly s2: NodeId }
  | { readonly kind: 'elect-s1'; readonly s5: NodeId; readonly s5Term: number }
  | { readonly kind: 'replicate-to-s3'; readonly leader: NodeId }
  | { readonly kind: 'elect-s5-again' };

/**
 * The Raft paper's Figure 8, played with real nodes on five servers by partitions alone
 * (isolating a server stands for the paper's crash), after every event of a simulation:
 * (a) the leader S1 writes an entry at index i and replicates it to S2 only;
 * (b) S5 is elected by S3, S4 and itself and appends an entry of its own term at i, which
 *     reaches nobody;
 * (c) S1 (or S2, which holds the same log) is elected again with S3's vote and replicates the
 *     old entry at i to S3: it is now on a majority, but of an earlier term;
 * (d) that leader is cut off before any entry of its own term reaches S3, and S5 is elected by
 *     S3, S4 and itself, and replaces the entry at i.
 * A leader that commits the entry at i in (c) by counting replicas (instead of through an entry
 * of its own term, Raft paper 5.4.2) breaks Leader Completeness in (d). A step that does not
 * come within `stepMs` (the servers' timing is random) leaves the figure unplayed.
 */
export class Figure8Schedule {
  readonly #cluster: Figure8Cluster;
  readonly #stages: ScheduleStages<Stage>;
  /** The index of the contested entry, and the term of the old one S1 wrote there. */
  #index = 0;
  #oldTerm = 0;
  /** S3 and S4 once S5 is known; S3 must hold the old entry and nothing after it in (d). */
  #s3: NodeId | undefined;
  #s4: NodeId | undefined;
  #s5: NodeId | undefined;

  constructor(cluster: Figure8Cluster, options: { stepMs: number }) {
    this.#cluster = cluster;
    this.#stages = new ScheduleStages({
      stepMs: options.stepMs,
      advance: () => this.#advance(),
      heal: () => cluster.heal(),
    });
  }

  /** Whether the figure was played to its end: S5 elected over the old entry on a majority. */
  get played(): boolean {
    return this.#stages.played;
  }

  /** Advances the schedule as far as the cluster's state allows; call after every event. */
  afterEvent(now: number): void {
    this.#stages.afterEvent(now);
  }

  #advance(): void {
    const nodes = new Map(this.#cluster.nodes().map((n) => [n.status().id, n]));
    const stage = this.#stages.current;
    switch (stage.kind) {
      case 'settle': {
        // Every server runs and holds the whole log, committed.
        if (nodes.size !== 5) return;
        const leader = [...nodes.values()].find((n) => n.status().role === 'leader');
        const s = leader?.status();
        if (leader === undefined || s === undefined || s.commitIndex !== s.lastIndex) return;
        for (const node of nodes.values()) {
          const n = node.status();
          if (n.lastIndex !== s.lastIndex || n.commitIndex !== s.lastIndex) return;
        }
        const s1 = s.id;
        const s2 = [...nodes.keys()].filter((id) => id !== s1).sort()[0] as NodeId;
        this.#index = s.lastIndex + 1;
        this.#oldTerm = s.term;
        this.#cluster.partition([[s1, s2], this.#others([s1, s2], nodes)]);
        this.#cluster.write(s1);
        this.#stages.moveTo({ kind: 'replicate-to-s2', s1, s2 });
        return;
      }
      case 'replicate-to-s2': {
        if (nodes.get(stage.s2)?.entry(this.#index)?.term !== this.#oldTerm) return;
        this.#stages.moveTo({ kind: 'elect-s5', s1: stage.s1, s2: stage.s2 });
        return;
      }
      case 'elect-s5': {
        const s5 = this.#leaderAmong(this.#others([stage.s1, stage.s2], nodes), nodes);
        if (s5 === undefined || s5.status().term <= this.#oldTerm) return;
        const [s3, s4] = this.#others([stage.s1, stage.s2, s5.status().id], nodes).sort();
        this.#s3 = s3;
        this.#s4 = s4;
        this.#s5 = s5.status().id;
        // Cut off at once: S5's entry at i (its first as leader) reaches nobody.
        this.#cluster.partition([[stage.s1, stage.s2, s3 as NodeId], [this.#s5], [s4 as NodeId]]);
        this.#stages.moveTo({ kind: 'elect-s1', s5: this.#s5, s5Term: s5.status().term });
        return;
      }
      case 'elect-s1': {
        const s3 = this.#s3 as NodeId;
        const leader = this.#leaderAmong(
          this.#others([stage.s5, s3, this.#s4 as NodeId], nodes),
          nodes,
        );
        if (leader === undefined || leader.status().term <= stage.s5Term) return;
        this.#stages.moveTo({ kind: 'replicate-to-s3', leader: leader.status().id });
        return;
      }
      case 'replicate-to-s3': {
        const s3 = this.#s3 as NodeId;
        const leader = nodes.get(stage.leader)?.status();
        if (leader?.role !== 'leader') {
          this.#stages.finish(false);
          return;
        }
        if ((leader.progress[s3]?.match ?? 0) < this.#index) return;
        // S3 acknowledged the old entry at i: cut the leader off before its next entry goes.
        const held = nodes.get(s3);
        const figure =
          held?.entry(this.#index)?.term === this.#oldTerm &&
          held.status().lastIndex === this.#index;
        const side = [this.#s5 as NodeId, s3, this.#s4 as NodeId];
        this.#cluster.partition([side, this.#others(side, nodes)]);
        if (!figure) {
          this.#stages.finish(false);
          return;
        }
        this.#stages.moveTo({ kind: 'elect-s5-again' });
        return;
      }
      case 'elect-s5-again': {
        const side = [this.#s5 as NodeId, this.#s3 as NodeId, this.#s4 as NodeId];
        const leader = this.#leaderAmong(side, nodes);
        if (leader === undefined) return;
        this.#stages.finish(leader.status().id === this.#s5);
        return;
      }
      case 'done':
        return;
    }
  }

  #others(ids: readonly NodeId[], nodes: ReadonlyMap<NodeId, ScheduledNode>): NodeId[] {
    return [...nodes.keys()].filter((id) => !ids.includes(id));
  }

  #leaderAmong(
    ids: readonly NodeId[],
    nodes: ReadonlyMap<NodeId, ScheduledNode>,
  ): ScheduledNode | undefined {
    return ids.map((id) => nodes.get(id)).find((n) => n?.status().role === 'leader');
  }
}
