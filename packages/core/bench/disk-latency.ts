/**
 * Commit latency against the latency of the log store's writes: an in-process 3-node cluster
 * (RaftNode, in-memory stores, in-process transport) whose every log persist first waits
 * `--persist-ms` ms, as a disk's write and flush would, without using CPU. It shows what the
 * runtime overlaps: a leader that sends its AppendEntries while its own write persists (thesis
 * 10.2.1) commits a write after about one persist, one that sends them after its write after
 * about two (its own, then a follower's).
 *
 *   pnpm --filter @tsraft/core bench:disk-latency [--persist-ms 0,2,5] [--inflight 1,64] [--seconds 3]
 *
 * Prints, for each persist latency and number of writes in flight, writes/s and the latency of
 * `propose()` on the leader (p50, p99), for 256-byte key/value puts (the test kit's
 * KvStateMachine). It uses only the public API: copied with `closed-loop.ts` into a checkout of
 * an earlier commit, it measures that commit too (where that checkout has no `tools/bench-cli`,
 * link this tree's at its `node_modules/@tsraft/bench-cli`).
 */
import { benchCommandLine, integerListOption, numberOption } from '@tsraft/bench-cli';
import { RaftNode } from '../src/runtime/raft-node.ts';
import { InProcessNetwork } from '../src/testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../src/testing/kv-state-machine.ts';
import { MemoryLogStore } from '../src/testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../src/testing/memory-snapshot-store.ts';
import { closedLoop, percentile } from './closed-loop.ts';

const { persistDelays, inFlights, seconds } = await benchCommandLine(
  {
    program: 'core bench:disk-latency',
    options: {
      'persist-ms': { type: 'string', default: '0,2,5' },
      inflight: { type: 'string', default: '1,64' },
      seconds: { type: 'string', default: '3' },
    },
  },
  ({ values }) => ({
    persistDelays: integerListOption('--persist-ms', values['persist-ms'], { min: 0, max: 1000 }),
    inFlights: integerListOption('--inflight', values.inflight, { min: 1, max: 4096 }),
    seconds: numberOption('--seconds', values.seconds, { above: 0, atMost: 600 }),
  }),
);

/** A log store whose every write takes `delayMs` before it is applied and acknowledged. */
class SlowDiskLogStore extends MemoryLogStore {
  readonly #delayMs: number;
  constructor(delayMs: number) {
    super();
    this.#delayMs = delayMs;
  }
  override async persist(...args: Parameters<MemoryLogStore['persist']>): Promise<void> {
    if (this.#delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.#delayMs));
    return super.persist(...args);
  }
}

interface Row {
  persistMs: number;
  inFlight: number;
  perSecond: number;
  p50: number;
  p99: number;
}

async function run(persistMs: number): Promise<Row[]> {
  const network = new InProcessNetwork({ copy: false });
  const ids = ['n1', 'n2', 'n3'];
  const nodes = await Promise.all(
    ids.map((id) =>
      RaftNode.start<KvCommand, KvResult>({
        id,
        config: { voters: ids },
        logStore: new SlowDiskLogStore(persistMs),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: new KvStateMachine(),
        transport: network.transport(id),
      }),
    ),
  );
  try {
    let leader: RaftNode<KvCommand, KvResult> | undefined;
    for (let i = 0; i < 500 && leader === undefined; i++) {
      leader = nodes.find((n) => n.status().role === 'leader');
      if (leader === undefined) await new Promise((r) => setTimeout(r, 10));
    }
    if (leader === undefined) throw new Error('no leader elected within 5 s');
    const value = 'v'.repeat(256);
    const write = (i: number) => leader.propose({ op: 'put', key: `k${i % 1024}`, value });
    const rows: Row[] = [];
    await measure(64, 1, write);
    for (const inFlight of inFlights) {
      const { perSecond, p50, p99 } = await measure(inFlight, seconds, write);
      rows.push({ persistMs, inFlight, perSecond, p50, p99 });
    }
    return rows;
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
}

async function measure(
  inFlight: number,
  forSeconds: number,
  op: (i: number) => Promise<unknown>,
): Promise<{ perSecond: number; p50: number; p99: number }> {
  const { latencies, elapsedSeconds } = await closedLoop(inFlight, forSeconds, op);
  return {
    perSecond: latencies.length / elapsedSeconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

const rows: Row[] = [];
for (const persistMs of persistDelays) {
  console.error(`[bench] log persists take ${persistMs} ms`);
  rows.push(...(await run(persistMs)));
}
console.log('| persist ms | in flight | writes/s | p50 ms | p99 ms |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.persistMs} | ${r.inFlight} | ${Math.round(r.perSecond).toLocaleString('en-US')} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`,
  );
}
