import type { EngineTuning } from '../engine/engine-options.ts';
import type { NodeId } from '../log-entry.ts';
import { type Clock, realClock } from '../runtime/clock.ts';
import { RaftNode } from '../runtime/raft-node.ts';
import type { RaftNodeOptions } from '../runtime/raft-node-options.ts';
import type { Transport } from '../transport.ts';
import { InProcessNetwork } from './in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from './kv-state-machine.ts';
import { type MemoryLogDurableState, MemoryLogStore } from './memory-log-store.ts';
import { type MemorySnapshotDurableState, MemorySnapshotStore } from './memory-snapshot-store.ts';

export type KvNode = RaftNode<KvCommand, KvResult>;

/** What survives a node's crash: its durable stores, and the state machine (durable in memory). */
export interface NodeDisk {
  log: MemoryLogDurableState | undefined;
  snapshots: MemorySnapshotDurableState | undefined;
  stateMachine: KvStateMachine;
  /** The log store of the running incarnation, for fault injection. */
  logStore: MemoryLogStore | undefined;
}

export interface TestClusterOptions {
  readonly size?: number;
  readonly tickMs?: number;
  readonly applyDelayMs?: number;
  readonly tuning?: Partial<EngineTuning>;
  readonly node?: Partial<RaftNodeOptions<KvCommand, KvResult>>;
  /** Wraps each node's transport (every incarnation's), e.g. to watch or damage its requests. */
  readonly wrapTransport?: (id: NodeId, transport: Transport) => Transport;
}

/**
 * A cluster of real {@link RaftNode}s on real timers over an {@link InProcessNetwork}, with
 * in-memory stores that outlive a node, so a test can stop a node and start it again from its
 * stores alone.
 */
export class TestCluster {
  readonly network: InProcessNetwork = new InProcessNetwork();
  readonly ids: NodeId[];
  readonly disks: Map<NodeId, NodeDisk> = new Map();
  readonly nodes: Map<NodeId, KvNode> = new Map();
  readonly #options: TestClusterOptions;

  private constructor(options: TestClusterOptions) {
    this.#options = options;
    this.ids = Array.from({ length: options.size ?? 3 }, (_, i) => `n${i + 1}`);
    for (const id of this.ids) {
      this.disks.set(id, {
        log: undefined,
        snapshots: undefined,
        stateMachine: new KvStateMachine({ applyDelayMs: options.applyDelayMs ?? 0 }),
        logStore: undefined,
      });
    }
  }

  static async start(options: TestClusterOptions = {}): Promise<TestCluster> {
    const cluster = new TestCluster(options);
    for (const id of cluster.ids) await cluster.startNode(id);
    return cluster;
  }

  node(id: NodeId): KvNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`node ${id} is not running`);
    return node;
  }

  disk(id: NodeId): NodeDisk {
    const disk = this.disks.get(id);
    if (disk === undefined) throw new Error(`no node ${id}`);
    return disk;
  }

  /** Starts node `id` from whatever its stores hold (empty the first time). */
  async startNode(
    id: NodeId,
    overrides: Partial<RaftNodeOptions<KvCommand, KvResult>> = {},
  ): Promise<KvNode> {
    const disk = this.disk(id);
    const logStore = new MemoryLogStore(disk.log === undefined ? {} : { durable: disk.log });
    const snapshotStore = new MemorySnapshotStore(
      disk.snapshots === undefined ? {} : { durable: disk.snapshots },
    );
    disk.log = logStore.durable;
    disk.snapshots = snapshotStore.durable;
    disk.logStore = logStore;
    const node = await RaftNode.start<KvCommand, KvResult>({
      id,
      config: { voters: this.ids },
      logStore,
      stateMachine: disk.stateMachine,
      snapshotStore,
      transport:
        overrides.transport ??
        this.#options.wrapTransport?.(id, this.network.transport(id)) ??
        this.network.transport(id),
      tickMs: this.#options.tickMs ?? 5,
      tuning: { electionTicks: 10, heartbeatTicks: 2, ...this.#options.tuning },
      ...this.#options.node,
      ...overrides,
    });
    this.nodes.set(id, node);
    return node;
  }

  /**
   * Starts a server outside the cluster's configuration (empty stores, the cluster's initial
   * configuration as its bootstrap configuration), to be added by a membership change. A server
   * that exists already loses its stores first, as a machine whose disk was replaced.
   */
  async addServer(
    id: NodeId,
    overrides: Partial<RaftNodeOptions<KvCommand, KvResult>> = {},
  ): Promise<KvNode> {
    await this.stopNode(id);
    this.disks.set(id, {
      log: undefined,
      snapshots: undefined,
      stateMachine: new KvStateMachine({ applyDelayMs: this.#options.applyDelayMs ?? 0 }),
      logStore: undefined,
    });
    return this.startNode(id, overrides);
  }

  /** Closes node `id`; its stores stay for a restart. */
  async stopNode(id: NodeId): Promise<void> {
    const node = this.nodes.get(id);
    this.nodes.delete(id);
    await node?.close();
  }

  /** Waits until one running node leads and every other reachable running node follows it. */
  async waitForLeader(options: { timeoutMs?: number; among?: NodeId[] } = {}): Promise<KvNode> {
    const among = options.among ?? [...this.nodes.keys()];
    let leader: KvNode | undefined;
    await waitFor(
      () => {
        const statuses = among.flatMap((id) => {
          const node = this.nodes.get(id);
          return node === undefined ? [] : [node.status()];
        });
        const leaders = statuses.filter((status) => status.role === 'leader');
        const top = leaders.sort((a, b) => b.term - a.term)[0];
        if (top === undefined) return false;
        const agree = statuses.filter(
          (status) => status.leaderId === top.id && status.term === top.term,
        );
        if (agree.length * 2 <= this.ids.length) return false;
        leader = this.nodes.get(top.id);
        return true;
      },
      { timeoutMs: options.timeoutMs ?? 3000, what: 'a leader' },
    );
    return leader as KvNode;
  }

  /** Waits until every running node applied at least `index`. */
  async waitForApplied(index: number, ids: NodeId[] = [...this.nodes.keys()]): Promise<void> {
    await waitFor(() => ids.every((id) => this.node(id).status().appliedIndex >= index), {
      what: `every node to apply ${index}`,
    });
  }

  followers(leader: KvNode): KvNode[] {
    return [...this.nodes.values()].filter((node) => node !== leader);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.nodes.keys()].map((id) => this.stopNode(id)));
  }
}

/**
 * The real clock, except that a test can pause the ticks of the nodes given {@link clock}
 * (their repeating timers): while paused, their engines see no time pass (no election timeout,
 * heartbeat or resend of a forwarded read), while messages, deadlines and storage run as usual.
 * For a test whose outcome must not depend on how many ticks fit into a step under load.
 */
export class PausableTicks {
  #paused = false;
  readonly clock: Clock = {
    ...realClock,
    setRepeating: (callback, ms) =>
      realClock.setRepeating(() => {
        if (!this.#paused) callback();
      }, ms),
  };

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
  }
}

/** Polls `condition` every few milliseconds until it holds, or fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  options: { timeoutMs?: number; what?: string } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 3000);
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${options.what ?? 'a condition'}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
