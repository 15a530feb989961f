/**
 * The tsraft demo (`./dev demo`): a guided tour of a 3-node Raft cluster running in this process,
 * with in-memory stores and an in-process network. It elects a leader, replicates typed writes
 * proposed on the leader and on a follower, serves a linearizable read from a follower, stops the
 * leader and shows a new one taking over while writes continue, restarts the old leader from its
 * stores and shows it catching up, then stops everything it started.
 */
import { type NodeId, RaftNode } from '@tsraft/core';
import {
  InProcessNetwork,
  type KvCommand,
  type KvResult,
  KvStateMachine,
  type MemoryLogDurableState,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';

type KvNode = RaftNode<KvCommand, KvResult>;

const ids: NodeId[] = ['n1', 'n2', 'n3'];
const network = new InProcessNetwork();
const disks = new Map<
  NodeId,
  { log: MemoryLogDurableState; machine: KvStateMachine; snapshots: MemorySnapshotStore }
>();
const nodes = new Map<NodeId, KvNode>();
const started = performance.now();

function say(text: string): void {
  const ms = Math.round(performance.now() - started);
  console.log(`[${String(ms).padStart(5)} ms] ${text}`);
}

async function startNode(id: NodeId): Promise<KvNode> {
  let disk = disks.get(id);
  if (disk === undefined) {
    disk = {
      log: new MemoryLogStore().durable,
      machine: new KvStateMachine(),
      snapshots: new MemorySnapshotStore(),
    };
    disks.set(id, disk);
  }
  const node = await RaftNode.start<KvCommand, KvResult>({
    id,
    config: { voters: ids },
    logStore: new MemoryLogStore({ durable: disk.log }),
    stateMachine: disk.machine,
    snapshotStore: disk.snapshots,
    transport: network.transport(id),
  });
  node.on('leader-change', ({ leaderId, term }) => {
    if (leaderId === id) say(`${id}: I am the leader of term ${term}`);
  });
  nodes.set(id, node);
  return node;
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const leaderOf = (): KvNode | undefined =>
  [...nodes.values()].find((node) => node.status().role === 'leader');

async function main(): Promise<void> {
  say(
    'Starting a 3-node Raft cluster (n1, n2, n3) in this process: in-memory stores, in-process network.',
  );
  say(
    'Every node starts as a follower; one that hears no leader for 150-300 ms asks the others for votes.',
  );
  for (const id of ids) await startNode(id);

  let leader = await waitFor('a leader', leaderOf);
  say(`${leader.id} won the election (term ${leader.status().term}). The others follow it.`);

  say('Proposing a typed write on the leader: put greeting = "hello".');
  const put = await leader.propose({ op: 'put', key: 'greeting', value: 'hello' });
  say(`  committed on a majority and applied; result: ${JSON.stringify(put)}`);

  const follower = [...nodes.values()].find((node) => node !== leader)!;
  say(`Proposing on follower ${follower.id}: it forwards the command to the leader.`);
  const appended = await follower.propose({ op: 'append', key: 'greeting', value: ', world' });
  say(`  result: ${JSON.stringify(appended)}`);

  const read = await follower.read(() => disks.get(follower.id)!.machine.get('greeting'), {
    consistency: 'linearizable',
  });
  say(
    `A linearizable read on follower ${follower.id} (ReadIndex: the leader confirms it still leads): greeting = ${JSON.stringify(read)}`,
  );

  const session = { clientId: 'demo-client', seq: 1 };
  const first = await leader.propose({ op: 'append', key: 'counter', value: 'x' }, { session });
  const retry = await leader.propose({ op: 'append', key: 'counter', value: 'x' }, { session });
  say(
    `Exactly-once: the same command sent twice with session ${JSON.stringify(session)} applies once: ${JSON.stringify(first)} then ${JSON.stringify(retry)}.`,
  );

  const old = leader;
  say(`Stopping the leader ${old.id}, as if its process died.`);
  await old.close();
  nodes.delete(old.id);
  const stoppedAt = performance.now();
  leader = await waitFor('a new leader', () => {
    const candidate = leaderOf();
    return candidate !== undefined && candidate.id !== old.id ? candidate : undefined;
  });
  say(
    `${leader.id} took over as leader of term ${leader.status().term}, ${Math.round(performance.now() - stoppedAt)} ms after ${old.id} stopped.`,
  );

  for (let i = 1; i <= 3; i++) {
    await leader.propose({ op: 'put', key: `after-failover-${i}`, value: String(i) });
  }
  say('Three more writes committed with two of three nodes: a majority is enough.');

  say(`Restarting ${old.id} from its stores alone (its log, vote and applied state survived).`);
  const restarted = await startNode(old.id);
  const target = leader.status().commitIndex;
  await waitFor(`${old.id} to catch up`, () =>
    restarted.status().appliedIndex >= target ? true : undefined,
  );
  say(
    `${old.id} rejoined as a follower and caught up to index ${target}: after-failover-3 = ${JSON.stringify(disks.get(old.id)!.machine.get('after-failover-3'))}.`,
  );

  say('Every node now holds the same state:');
  for (const id of ids) {
    const machine = disks.get(id)!.machine;
    say(
      `  ${id}: greeting=${JSON.stringify(machine.get('greeting'))} counter=${JSON.stringify(machine.get('counter'))} applied=${nodes.get(id)!.status().appliedIndex}`,
    );
  }
}

try {
  await main();
  say('Tour complete.');
} catch (error) {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  await Promise.all([...nodes.values()].map((node) => node.close()));
  say('Stopped every node this demo started.');
}
