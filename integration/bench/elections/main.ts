/**
 * `./dev bench:elections`: how often a healthy 3-node cluster elects a leader, idle and loaded,
 * and how many peer requests it sends while idle.
 *
 * Starts three KV nodes as OS processes (`integration/src/fixtures/kv-node.ts`: in-memory stores,
 * the tRPC peer transport over loopback) with the timing given (default: the library's
 * defaults), waits for the first leader, then measures two phases of `--seconds` each:
 * - idle: no client; peer requests/s (every request a node received from a peer, counted by the
 *   nodes), elections (term increments: a pre-vote that fails does not count) and leader changes;
 * - loaded: `--inflight` writes in flight to the leader and `--burners` CPU-bound processes beside
 *   the cluster (a loaded 2-core machine); the same counts, and writes/s.
 * Each phase also gives the worst event-loop delay of the nodes (p99 and max, from
 * `monitorEventLoopDelay`): the stalls an election timeout must outlast.
 * Elections per hour are extrapolated from the short phases and printed as such.
 *
 * Options (all optional):
 *   --seconds 60          measured seconds per phase
 *   --inflight 64         writes in flight in the loaded phase
 *   --burners 2           CPU-bound processes in the loaded phase
 *   --tick-ms N --election-ticks N --heartbeat-ticks N   the nodes' timing
 *   --label TEXT          a name for the timing in the table
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createTRPCUntypedClient, httpLink, type TRPCUntypedClient } from '@trpc/client';
import type { AnyTRPCRouter } from '@trpc/server';
import { benchCommandLine, integerOption, numberOption } from '@tsraft/bench-cli';
import type { NodeId, RaftNodeStatus } from '@tsraft/core';
import { DEFAULT_ENGINE_TUNING } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';

const NODE = fileURLToPath(new URL('../../src/fixtures/kv-node.ts', import.meta.url));
const SECRET = 'the secret of the elections benchmark';
const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
/** The node's default tick (RaftNode's `tickMs`), for the table. */
const DEFAULT_TICK_MS = 15;

const { seconds, inflight, burners, label, timing } = await benchCommandLine(
  {
    program: 'bench:elections',
    options: {
      seconds: { type: 'string', default: '60' },
      inflight: { type: 'string', default: '64' },
      burners: { type: 'string', default: '2' },
      'tick-ms': { type: 'string' },
      'election-ticks': { type: 'string' },
      'heartbeat-ticks': { type: 'string' },
      label: { type: 'string', default: 'defaults' },
    },
  },
  ({ values }) => {
    const ticks = (flag: string, text: string | undefined) =>
      text === undefined ? undefined : integerOption(flag, text, { min: 1 });
    return {
      seconds: numberOption('--seconds', values.seconds, { above: 0 }),
      inflight: integerOption('--inflight', values.inflight, { min: 0 }),
      burners: integerOption('--burners', values.burners, { min: 0 }),
      label: values.label,
      timing: {
        tickMs:
          values['tick-ms'] === undefined
            ? undefined
            : numberOption('--tick-ms', values['tick-ms'], { above: 0 }),
        electionTicks: ticks('--election-ticks', values['election-ticks']),
        heartbeatTicks: ticks('--heartbeat-ticks', values['heartbeat-ticks']),
      },
    };
  },
);

interface Metrics {
  peerRequests: number;
  loopDelayMs: { p50: number; p99: number; max: number };
}

class NodeProcess {
  readonly child: ChildProcess;
  readonly client: TRPCUntypedClient<AnyTRPCRouter>;
  readonly ready: Promise<void>;
  readonly id: NodeId;
  readonly url: string;
  #output = '';

  constructor(id: NodeId, url: string, peers: Record<NodeId, string>) {
    this.id = id;
    this.url = url;
    const given = Object.fromEntries(Object.entries(timing).filter(([, v]) => v !== undefined));
    this.child = spawn(process.execPath, ['--conditions=@tsraft/source', NODE], {
      env: {
        ...process.env,
        TSRAFT_NODE_ID: id,
        TSRAFT_PEERS: JSON.stringify(peers),
        TSRAFT_SECRET: SECRET,
        TSRAFT_TIMING: JSON.stringify(given),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.#output += chunk.toString();
    });
    this.ready = new Promise((resolve, reject) => {
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        if (line.includes('"ready"')) resolve();
      });
      this.child.once('exit', (code) =>
        reject(new Error(`node ${id} exited (${code}) before it served: ${this.#output}`)),
      );
    });
    this.client = createTRPCUntypedClient({
      links: [httpLink({ url: `${url}/trpc`, headers: { 'x-admin': SECRET } })],
    });
  }

  status(): Promise<RaftNodeStatus> {
    return this.client.query('raftAdmin.status') as Promise<RaftNodeStatus>;
  }

  async metrics(reset = false): Promise<Metrics> {
    const response = await fetch(`${this.url}/metrics${reset ? '?reset' : ''}`);
    return (await response.json()) as Metrics;
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** Watches the nodes' terms and leaders every 100 ms. */
class ElectionWatch {
  readonly #nodes: NodeProcess[];
  maxTerm = 0;
  leader: { id: NodeId; term: number } | undefined;
  leaderChanges = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(nodes: NodeProcess[]) {
    this.#nodes = nodes;
  }

  async poll(): Promise<void> {
    const statuses = await Promise.all(this.#nodes.map((node) => node.status().catch(() => null)));
    for (const status of statuses) {
      if (status === null) continue;
      this.maxTerm = Math.max(this.maxTerm, status.term);
      if (
        status.role === 'leader' &&
        (this.leader === undefined || status.term > this.leader.term)
      ) {
        if (this.leader !== undefined) this.leaderChanges++;
        this.leader = { id: status.id, term: status.term };
      }
    }
  }

  start(): void {
    this.#timer = setInterval(() => void this.poll(), 100);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

interface PhaseResult {
  phase: string;
  seconds: number;
  elections: number;
  leaderChanges: number;
  peerRequestsPerSecond: number;
  writesPerSecond: number | undefined;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

async function measure(
  phase: string,
  nodes: NodeProcess[],
  watch: ElectionWatch,
  during: (signal: AbortSignal) => Promise<number | undefined>,
): Promise<PhaseResult> {
  await watch.poll();
  const termBefore = watch.maxTerm;
  const changesBefore = watch.leaderChanges;
  const before = await Promise.all(nodes.map((node) => node.metrics(true)));
  const started = performance.now();
  const writes = await during(AbortSignal.timeout(seconds * 1000));
  const elapsed = (performance.now() - started) / 1000;
  const after = await Promise.all(nodes.map((node) => node.metrics()));
  await watch.poll();
  const requests = after.reduce((sum, m, i) => sum + m.peerRequests - before[i]!.peerRequests, 0);
  return {
    phase,
    seconds: elapsed,
    elections: watch.maxTerm - termBefore,
    leaderChanges: watch.leaderChanges - changesBefore,
    peerRequestsPerSecond: requests / elapsed,
    writesPerSecond: writes === undefined ? undefined : writes / elapsed,
    loopDelayP99Ms: Math.max(...after.map((m) => m.loopDelayMs.p99)),
    loopDelayMaxMs: Math.max(...after.map((m) => m.loopDelayMs.max)),
  };
}

function idle(signal: AbortSignal): Promise<undefined> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(undefined)));
}

/** Writes with `inflight` loops to whichever node leads, beside `burners` busy processes. */
async function loaded(
  nodes: NodeProcess[],
  watch: ElectionWatch,
  signal: AbortSignal,
): Promise<number> {
  const burning = Array.from({ length: burners }, () =>
    spawn(
      process.execPath,
      ['-e', `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end) {}`],
      { stdio: 'ignore' },
    ),
  );
  let writes = 0;
  const value = 'v'.repeat(256);
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !signal.aborted; i++) {
      const leader = nodes.find((node) => node.id === watch.leader?.id) ?? nodes[0]!;
      try {
        await leader.client.mutation('execute', { op: 'put', key: `k${w}-${i % 100}`, value });
        writes++;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, (_, w) => writer(w)));
  for (const child of burning) child.kill('SIGKILL');
  return writes;
}

const urls: Record<NodeId, string> = {};
for (const id of IDS) urls[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
const nodes = IDS.map((id) => new NodeProcess(id, urls[id]!, urls));
process.once('exit', () => {
  for (const node of nodes) node.stop();
});
try {
  await Promise.all(nodes.map((node) => node.ready));
  const watch = new ElectionWatch(nodes);
  const startedAt = performance.now();
  while (watch.leader === undefined) {
    await watch.poll();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const firstLeaderMs = performance.now() - startedAt;
  const firstRequests = (await Promise.all(nodes.map((node) => node.metrics()))).reduce(
    (sum, m) => sum + m.peerRequests,
    0,
  );
  watch.start();
  const results = [
    await measure('idle', nodes, watch, idle),
    await measure(
      `loaded (${inflight} writes in flight, ${burners} busy processes)`,
      nodes,
      watch,
      (signal) => loaded(nodes, watch, signal),
    ),
  ];
  watch.stop();

  const tickMs = timing.tickMs ?? DEFAULT_TICK_MS;
  const electionTicks = timing.electionTicks ?? DEFAULT_ENGINE_TUNING.electionTicks;
  const heartbeatTicks = timing.heartbeatTicks ?? DEFAULT_ENGINE_TUNING.heartbeatTicks;
  console.log(
    `\ntiming "${label}": tick ${tickMs} ms, heartbeat ${heartbeatTicks * tickMs} ms, election timeout ${electionTicks * tickMs}-${2 * electionTicks * tickMs} ms`,
  );
  console.log(
    `first leader after ${Math.round(firstLeaderMs)} ms (from the nodes serving), ${firstRequests} peer requests until then (all three nodes, including their start)`,
  );
  console.table(
    results.map((r) => ({
      phase: r.phase,
      seconds: Number(r.seconds.toFixed(1)),
      elections: r.elections,
      'leader changes': r.leaderChanges,
      'elections/hour (extrapolated)': Math.round((r.elections / r.seconds) * 3600),
      'peer requests/s': Math.round(r.peerRequestsPerSecond),
      'writes/s': r.writesPerSecond === undefined ? '-' : Math.round(r.writesPerSecond),
      'loop delay p99 ms': r.loopDelayP99Ms,
      'loop delay max ms': r.loopDelayMaxMs,
    })),
  );
  console.log(
    `elections/hour are extrapolated from ${seconds} s phases: ${results.map((r) => `${r.elections} in ${r.seconds.toFixed(0)} s (${r.phase.split(' ')[0]})`).join(', ')}.`,
  );
} finally {
  for (const node of nodes) node.stop();
}
