import { describe, expect, it } from 'vitest';
import { StorageError } from '../errors.ts';
import type { LogWrite } from '../log-store.ts';
import type { AppliedEntry, CommandResult } from '../state-machine.ts';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import { VirtualTime } from '../testing/sim/virtual-time.ts';
import { RaftNode } from './raft-node.ts';
import { RaftSupervisor } from './raft-supervisor.ts';

/** A key/value state machine that records the leader's timestamp of each command it applies. */
class StampRecordingMachine extends KvStateMachine {
  readonly stamps: number[] = [];
  override apply(
    entries: readonly AppliedEntry<KvCommand>[],
    options?: { signal?: AbortSignal },
  ): Promise<(CommandResult<KvResult> | undefined)[]> {
    for (const entry of entries) if (entry.kind === 'command') this.stamps.push(entry.timestamp);
    return super.apply(entries, options);
  }
}

const WALL_CLOCK_AT_START = 1_700_000_000_000;

describe('the clock a node is given', () => {
  it('is the only source of ticks, election timeouts and command timestamps', async () => {
    const time = new VirtualTime();
    const stateMachine = new StampRecordingMachine();
    const node = await RaftNode.start<KvCommand, KvResult>({
      id: 'n1',
      config: { voters: ['n1'] },
      logStore: new MemoryLogStore(),
      snapshotStore: new MemorySnapshotStore(),
      stateMachine,
      transport: new InProcessNetwork().transport('n1'),
      tickMs: 10,
      clock: time.clock(WALL_CLOCK_AT_START),
    });
    // Real time passes, virtual time does not: no tick, so no election.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(node.status()).toMatchObject({ role: 'follower', term: 0 });

    await time.runUntilTrue(() => node.status().role === 'leader', 1_000);
    // An election timeout is at least `electionTicks` (default 10) ticks of 10 virtual ms.
    expect(time.now).toBeGreaterThanOrEqual(100);

    await time.runUntil(time.now + 1_234);
    let result: unknown;
    void node.propose({ op: 'put', key: 'k', value: 'v' }).then((r) => {
      result = r;
    });
    const proposedAt = time.now;
    await time.runUntilTrue(() => result !== undefined, 100);
    expect(result).toEqual({ op: 'put', value: 'v' });
    expect(stateMachine.stamps).toEqual([WALL_CLOCK_AT_START + proposedAt]);
    await time.runUntilSettled(node.close(), 1_000);
  });

  it("times a supervisor's restart back-off and downtime", async () => {
    const time = new VirtualTime();
    const clock = time.clock(WALL_CLOCK_AT_START);
    const network = new InProcessNetwork();
    const disk = new MemoryLogStore();
    let failNextPersist = false;
    const recovered: number[] = [];
    let failedAt = 0;
    const supervisor = await RaftSupervisor.start<KvCommand, KvResult>({
      clock,
      backoff: { initialMs: 250 },
      open: async () => {
        const logStore = new MemoryLogStore({ durable: disk.durable });
        const persist = logStore.persist.bind(logStore);
        logStore.persist = (write: LogWrite, options) => {
          if (!failNextPersist) return persist(write, options);
          failNextPersist = false;
          failedAt = time.now;
          return Promise.reject(new StorageError('the database went away'));
        };
        return {
          id: 'n1',
          config: { voters: ['n1'] },
          logStore,
          snapshotStore: new MemorySnapshotStore(),
          stateMachine: new KvStateMachine(),
          transport: network.transport('n1'),
          tickMs: 10,
        };
      },
    });
    supervisor.on('recovered', (event) => recovered.push(event.downtimeMs));
    await time.runUntilTrue(() => supervisor.node?.status().role === 'leader', 1_000);
    failNextPersist = true;
    void supervisor.propose({ op: 'put', key: 'k', value: 'v' }).catch(() => {});
    await time.runUntilTrue(() => recovered.length === 1, 1_000);
    // Restarting takes no virtual time: the downtime is the back-off, to the millisecond.
    expect(recovered).toEqual([250]);
    expect(time.now).toBe(failedAt + 250);
    await time.runUntilSettled(supervisor.close(), 1_000);
  });
});
