import { describe, expect, it } from 'vitest';
import { NodeClosedError, NodeRecoveringError, RaftError, StorageError } from '../errors.ts';
import type { NodeId } from '../log-entry.ts';
import type { LogStoreState } from '../log-store.ts';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { type MemoryLogDurableState, MemoryLogStore } from '../testing/memory-log-store.ts';
import {
  type MemorySnapshotDurableState,
  MemorySnapshotStore,
} from '../testing/memory-snapshot-store.ts';
import { waitFor } from '../testing/test-cluster.test-helpers.ts';
import { RaftSupervisor } from './raft-supervisor.ts';
import type { RaftSupervisorEvents } from './raft-supervisor-events.ts';

type KvSupervisor = RaftSupervisor<KvCommand, KvResult>;

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

/** A database that can be down: every `load` fails while `down` (as a lost Postgres would). */
interface Outage {
  down: boolean;
  /** `load` calls refused so far. */
  refused: number;
}

/** A {@link MemoryLogStore} whose `load` fails while its outage lasts. */
class OutageLogStore extends MemoryLogStore {
  readonly #outage: Outage;
  constructor(durable: MemoryLogDurableState | undefined, outage: Outage) {
    super(durable === undefined ? {} : { durable });
    this.#outage = outage;
  }
  override async load(options?: { signal?: AbortSignal }): Promise<LogStoreState> {
    if (this.#outage.down) {
      this.#outage.refused++;
      throw new Error('connection refused');
    }
    return super.load(options);
  }
}

/** What outlives a node's incarnations: its durable stores, its state machine, its outage. */
interface Disk {
  log: MemoryLogDurableState | undefined;
  snapshots: MemorySnapshotDurableState | undefined;
  readonly stateMachine: KvStateMachine;
  readonly outage: Outage;
  /** The running incarnation's log store, for fault injection. */
  logStore: MemoryLogStore | undefined;
  opened: number;
  released: number;
}

/** Supervised nodes over an in-process network, each with stores that outlive its nodes. */
class SupervisedCluster {
  readonly network: InProcessNetwork = new InProcessNetwork();
  readonly disks: Map<NodeId, Disk> = new Map();
  readonly supervisors: Map<NodeId, KvSupervisor> = new Map();
  readonly ids: NodeId[];

  constructor(size: number) {
    this.ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    for (const id of this.ids) {
      this.disks.set(id, {
        log: undefined,
        snapshots: undefined,
        stateMachine: new KvStateMachine(),
        outage: { down: false, refused: 0 },
        logStore: undefined,
        opened: 0,
        released: 0,
      });
    }
  }

  static async start(size = 3): Promise<SupervisedCluster> {
    const cluster = new SupervisedCluster(size);
    for (const id of cluster.ids) cluster.supervisors.set(id, await cluster.supervise(id));
    return cluster;
  }

  disk(id: NodeId): Disk {
    return this.disks.get(id) as Disk;
  }

  supervisor(id: NodeId): KvSupervisor {
    return this.supervisors.get(id) as KvSupervisor;
  }

  supervise(id: NodeId): Promise<KvSupervisor> {
    const disk = this.disk(id);
    return RaftSupervisor.start<KvCommand, KvResult>({
      backoff: { initialMs: 10, maxMs: 40 },
      open: async () => {
        disk.opened++;
        const logStore = new OutageLogStore(disk.log, disk.outage);
        const snapshotStore = new MemorySnapshotStore(
          disk.snapshots === undefined ? {} : { durable: disk.snapshots },
        );
        disk.log = logStore.durable;
        disk.snapshots = snapshotStore.durable;
        disk.logStore = logStore;
        return {
          id,
          config: { voters: this.ids },
          logStore,
          snapshotStore,
          stateMachine: disk.stateMachine,
          // A fresh transport per incarnation: the dead node closed its own.
          transport: this.network.transport(id),
          tickMs: 5,
          tuning: { electionTicks: 10, heartbeatTicks: 2 },
          release: () => {
            disk.released++;
          },
        };
      },
    });
  }

  async leader(): Promise<KvSupervisor> {
    let found: KvSupervisor | undefined;
    await waitFor(
      () => {
        found = [...this.supervisors.values()].find((supervisor) => {
          const status = supervisor.status();
          return status.state === 'running' && status.role === 'leader';
        });
        return found !== undefined;
      },
      { what: 'a leader' },
    );
    return found as KvSupervisor;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.supervisors.values()].map((supervisor) => supervisor.close()));
  }
}

/** Proposes `command` until some running leader acknowledges it (retryable errors only). */
async function proposeAcknowledged(cluster: SupervisedCluster, command: KvCommand): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const leader = await cluster.leader();
    try {
      await leader.propose(command);
      return;
    } catch (error) {
      if (!(error instanceof RaftError && error.retryable) || Date.now() > deadline) throw error;
    }
  }
}

function nextEvent<E extends keyof RaftSupervisorEvents>(
  supervisor: KvSupervisor,
  event: E,
): Promise<RaftSupervisorEvents[E]> {
  return new Promise((resolve) => {
    supervisor.once(event, (...args) => resolve(args));
  });
}

describe('RaftSupervisor', () => {
  it('restarts a leader stopped by a storage failure by itself, once its store is back; nothing acknowledged is lost (Raft paper, Figure 2: durable state survives)', async () => {
    await using cluster = await SupervisedCluster.start();
    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) {
      await proposeAcknowledged(cluster, put(`before-${i}`, 'v'));
      acknowledged.push(`before-${i}`);
    }
    const old = await cluster.leader();
    const disk = cluster.disk(old.id);
    const fatal = nextEvent(old, 'fatal');
    const recovered = nextEvent(old, 'recovered');

    // The database goes away: the next persist fails (fatal), and restarts fail while it is down.
    disk.outage.down = true;
    disk.logStore?.failNextPersist(new Error('connection terminated'));
    const inFlight = old.propose(put('in-flight', 'v'));
    await expect(inFlight).rejects.toBeInstanceOf(NodeRecoveringError);
    const [{ error }] = await fatal;
    expect(error).toBeInstanceOf(StorageError);

    // While it is down, the node neither leads nor acknowledges: calls fail at once, retryably.
    expect(old.node).toBeUndefined();
    const status = old.status();
    expect(status.state).toBe('recovering');
    const rejected = await old.propose(put('while-down', 'v')).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(NodeRecoveringError);
    expect((rejected as NodeRecoveringError).retryable).toBe(true);
    expect((rejected as NodeRecoveringError).cause).toBe(error);
    await expect(old.read(() => disk.stateMachine.get('before-0'))).rejects.toBeInstanceOf(
      NodeRecoveringError,
    );
    await waitFor(() => disk.outage.refused >= 3, { what: 'three refused restarts' });
    const down = old.status();
    expect(down.state === 'recovering' && down.attempt >= 3).toBe(true);
    expect(down.state === 'recovering' && down.lastError).toBeInstanceOf(StorageError);

    // The others elect a new leader and keep acknowledging writes meanwhile.
    for (let i = 0; i < 5; i++) {
      await proposeAcknowledged(cluster, put(`during-${i}`, 'v'));
      acknowledged.push(`during-${i}`);
    }
    expect((await cluster.leader()).id).not.toBe(old.id);

    // The database returns: the supervisor's next try starts a node, which catches up.
    disk.outage.down = false;
    const [{ attempts, incarnation }] = await recovered;
    expect(attempts).toBeGreaterThanOrEqual(4);
    expect(incarnation).toBe(2);
    expect(old.status().state).toBe('running');
    // Every failed start and the dead incarnation were released; the running one was not.
    expect(disk.released).toBe(disk.opened - 1);

    await proposeAcknowledged(cluster, put('after', 'v'));
    acknowledged.push('after');
    const commit = (await cluster.leader()).node?.status().commitIndex ?? Infinity;
    await waitFor(() => old.node !== undefined && old.node.status().appliedIndex >= commit, {
      what: 'the restarted node to catch up',
    });
    for (const key of acknowledged) expect(disk.stateMachine.get(key)).toBe('v');
    await expect(old.read(() => disk.stateMachine.get('after'))).resolves.toBe('v');
  });

  it('stops retrying when closed during recovery', async () => {
    await using cluster = await SupervisedCluster.start(1);
    const supervisor = await cluster.leader();
    const disk = cluster.disk(supervisor.id);
    await supervisor.propose(put('k', 'v'));
    disk.outage.down = true;
    disk.logStore?.failNextPersist(new Error('disk gone'));
    await expect(supervisor.propose(put('k', 'w'))).rejects.toBeInstanceOf(NodeRecoveringError);
    await nextEvent(supervisor, 'restart-failed');

    await supervisor.close();
    const opened = disk.opened;
    expect(disk.released).toBe(opened);
    expect(supervisor.status().state).toBe('closed');
    await expect(supervisor.propose(put('k', 'x'))).rejects.toBeInstanceOf(NodeClosedError);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(disk.opened).toBe(opened);
  });

  it('rejects start when the first node cannot start, releasing what open() built', async () => {
    const cluster = new SupervisedCluster(1);
    const disk = cluster.disk('n1');
    disk.outage.down = true;
    await expect(cluster.supervise('n1')).rejects.toBeInstanceOf(StorageError);
    expect(disk.opened).toBe(1);
    expect(disk.released).toBe(1);
  });

  it('re-emits the node events and reports the running node status', async () => {
    const cluster = new SupervisedCluster(1);
    const supervisor = await cluster.supervise('n1');
    cluster.supervisors.set('n1', supervisor);
    await using _ = cluster;
    const roles: string[] = [];
    supervisor.on('role-change', ({ role }) => roles.push(role));
    await cluster.leader();
    // The event follows once the Ready that made the node leader is carried out.
    await expect.poll(() => roles).toContain('leader');
    const status = supervisor.status();
    expect(status.state === 'running' && status.incarnation).toBe(1);
    expect(supervisor.node?.status().role).toBe('leader');
  });
});
