/**
 * Benchmark of the core: an in-process 3-node cluster (RaftNode, in-memory log store, KV state
 * machine, in-process transport), 256-byte proposals.
 *
 *   pnpm --filter @tsraft/core bench [--seconds 3] [--changes 10]
 *
 * Prints committed proposals/s, commit latency (p50/p99, measured from propose() to its result on
 * the leader) and CPU time per proposal (all three nodes run in this process, so it is the
 * cluster's CPU), for 1, 64 and 256 proposals in flight; then linearizable reads/s (ReadIndex)
 * with 64 in flight on the leader and on a follower.
 *
 * Then (issue 11, `membership-load.ts`): lease reads/s beside ReadIndex reads/s on the leader, in
 * alternating rounds; and the duration (p50, p99) of membership changes and leadership transfers
 * under 64 writes in flight (`--changes` rounds of each), with the writes/s completed during them
 * beside those completed between them.
 *
 * Writes run twice: key/value puts through the test kit's KvStateMachine with the default JSON
 * codec (every node decodes every entry), and raw 256-byte payloads with a state machine that only
 * counts them, which shows the cost of consensus alone.
 */
import { benchCommandLine, integerOption, numberOption } from '@tsraft/bench-cli';
import type { LogPosition } from '../src/log-entry.ts';
import {
  type CommandCodec,
  type CommandEnvelope,
  jsonCodec,
} from '../src/runtime/command-codec.ts';
import { RaftNode } from '../src/runtime/raft-node.ts';
import type { AppliedEntry, CommandResult, StateMachine } from '../src/state-machine.ts';
import { InProcessNetwork } from '../src/testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../src/testing/kv-state-machine.ts';
import { MemoryLogStore } from '../src/testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../src/testing/memory-snapshot-store.ts';
import { closedLoop, percentile } from './closed-loop.ts';
import { leaseReadRows, membershipRows } from './membership-load.ts';

const { seconds, changes } = await benchCommandLine(
  {
    program: 'core bench',
    options: {
      seconds: { type: 'string', default: '3' },
      changes: { type: 'string', default: '10' },
    },
  },
  ({ values }) => ({
    seconds: numberOption('--seconds', values.seconds, { above: 0, atMost: 600 }),
    changes: integerOption('--changes', values.changes, { min: 1, max: 1000 }),
  }),
);

/**
 * The cost of consensus alone: commands are raw 256-byte payloads, encoded as
 * [timestamp f64][payload] (no session), and the state machine only counts them.
 */
function rawCodec(): CommandCodec<Uint8Array, number> {
  const json = jsonCodec<Uint8Array, number>();
  return {
    encode(envelope: CommandEnvelope<Uint8Array>): Uint8Array {
      const out = new Uint8Array(8 + envelope.command.byteLength);
      new DataView(out.buffer).setFloat64(0, envelope.timestamp);
      out.set(envelope.command, 8);
      return out;
    },
    decode(bytes: Uint8Array): CommandEnvelope<Uint8Array> {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return { timestamp: view.getFloat64(0), command: bytes.subarray(8) };
    },
    encodeResult: json.encodeResult,
    decodeResult: json.decodeResult,
  };
}

/** Counts applied commands; keeps nothing else. */
class CountingStateMachine implements StateMachine<Uint8Array, number> {
  #applied: LogPosition = { index: 0, term: 0 };
  #count = 0;
  async lastApplied(): Promise<LogPosition> {
    return this.#applied;
  }
  async apply(
    entries: readonly AppliedEntry<Uint8Array>[],
  ): Promise<(CommandResult<number> | undefined)[]> {
    const results = entries.map((entry) =>
      entry.kind === 'command' ? { status: 'ok' as const, value: ++this.#count } : undefined,
    );
    const last = entries.at(-1);
    if (last !== undefined) this.#applied = { index: last.index, term: last.term };
    return results;
  }
  exportSnapshot(): never {
    throw new Error('the benchmark takes no snapshots');
  }
  restoreSnapshot(): never {
    throw new Error('the benchmark takes no snapshots');
  }
}

async function startCluster<Command, Result, Machine extends StateMachine<Command, Result>>(
  codec: CommandCodec<Command, Result>,
  machine: () => Machine,
): Promise<{ nodes: RaftNode<Command, Result>[]; machines: Machine[] }> {
  // Messages and entries are immutable by contract: no defensive copies between nodes.
  const network = new InProcessNetwork({ copy: false });
  const ids = ['n1', 'n2', 'n3'];
  const machines = ids.map(machine);
  const nodes = await Promise.all(
    ids.map((id, i) =>
      RaftNode.start<Command, Result>({
        id,
        config: { voters: ids },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: machines[i]!,
        transport: network.transport(id),
        codec,
      }),
    ),
  );
  return { nodes, machines };
}

async function waitForLeader<C, R>(nodes: readonly RaftNode<C, R>[]): Promise<RaftNode<C, R>> {
  for (let i = 0; i < 500; i++) {
    const leader = nodes.find((n) => n.status().role === 'leader');
    if (leader !== undefined) return leader;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no leader elected within 5 s');
}

interface Row {
  workload: string;
  inFlight: number;
  ops: number;
  perSecond: number;
  p50: number;
  p99: number;
  cpuUs: number;
}

/** Runs `op` from `inFlight` concurrent loops for `seconds`. */
async function measure(
  workload: string,
  inFlight: number,
  op: (i: number) => Promise<unknown>,
): Promise<Row> {
  const cpuStart = process.cpuUsage();
  const { latencies, elapsedSeconds } = await closedLoop(inFlight, seconds, op);
  const cpu = process.cpuUsage(cpuStart);
  return {
    workload,
    inFlight,
    ops: latencies.length,
    perSecond: latencies.length / elapsedSeconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuUs: (cpu.user + cpu.system) / latencies.length,
  };
}

const rows: Row[] = [];

{
  const { nodes, machines } = await startCluster(
    jsonCodec<KvCommand, KvResult>(),
    () => new KvStateMachine(),
  );
  try {
    const leader = await waitForLeader(nodes);
    const value = 'v'.repeat(256);
    const write = (i: number) => leader.propose({ op: 'put', key: `k${i % 1024}`, value });
    console.error(`[bench] key/value, JSON codec: leader ${leader.status().id}; warming up`);
    await measure('warm-up', 64, write);
    for (const inFlight of [1, 64, 256]) {
      console.error(`[bench] key/value puts, ${inFlight} in flight, ${seconds} s`);
      rows.push(await measure('KV put 256 B, JSON', inFlight, write));
    }
    const follower = nodes.find((n) => n !== leader)!;
    const followerMachine = machines[nodes.indexOf(follower)]!;
    const leaderMachine = machines[nodes.indexOf(leader)]!;
    console.error(`[bench] linearizable reads on the leader, 64 in flight, ${seconds} s`);
    rows.push(
      await measure('KV read (leader)', 64, (i) =>
        leader.read(() => leaderMachine.get(`k${i % 1024}`), { consistency: 'linearizable' }),
      ),
    );
    console.error(`[bench] linearizable reads on a follower, 64 in flight, ${seconds} s`);
    rows.push(
      await measure('KV read (follower)', 64, (i) =>
        follower.read(() => followerMachine.get(`k${i % 1024}`), { consistency: 'linearizable' }),
      ),
    );
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
}

{
  const { nodes } = await startCluster(rawCodec(), () => new CountingStateMachine());
  try {
    const leader = await waitForLeader(nodes);
    const payload = new Uint8Array(256).fill(7);
    const write = () => leader.propose(payload);
    console.error(`[bench] raw payloads: leader ${leader.status().id}; warming up`);
    await measure('warm-up', 64, write);
    for (const inFlight of [1, 64, 256]) {
      console.error(`[bench] raw 256-byte proposals, ${inFlight} in flight, ${seconds} s`);
      rows.push(await measure('raw 256 B', inFlight, write));
    }
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
}

const targets: Record<string, string> = {
  'KV put 256 B, JSON/1': '>= 20,000/s',
  'KV put 256 B, JSON/256': '>= 150,000/s',
  'raw 256 B/1': '>= 20,000/s',
  'raw 256 B/256': '>= 150,000/s',
  'KV read (leader)/64': '>= 3x puts@64',
  'KV read (follower)/64': '>= 3x puts@64',
};
const header = ['workload', 'in flight', 'ops', 'ops/s', 'p50 ms', 'p99 ms', 'CPU µs/op', 'target'];
const lines = rows.map((r) => [
  r.workload,
  String(r.inFlight),
  String(r.ops),
  Math.round(r.perSecond).toLocaleString('en-US'),
  r.p50.toFixed(3),
  r.p99.toFixed(3),
  r.cpuUs.toFixed(1),
  targets[`${r.workload}/${r.inFlight}`] ?? '',
]);
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
const format = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
console.log(format(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const line of lines) console.log(format(line));
console.log(
  '\nReference (not measured here): openraft reports about 33,000 sequential writes/s in a comparable in-memory Rust setup.',
);

const leaseTable = await leaseReadRows(seconds);
const membershipTable = await membershipRows(changes);
console.log(`\n${leaseTable}\n\n${membershipTable}`);
