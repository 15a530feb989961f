import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  baselineTree,
  benchCommandLine,
  choiceListOption,
  choiceOption,
  commitOption,
  integerListOption,
  integerOption,
  numberOption,
  processCpu,
} from '@tsraft/bench-cli';
import { pickLoopbackPort } from '@tsraft/core/testing';
import {
  EmbeddedProvider,
  ExternalProvider,
  type PostgresProvider,
  type PostgresServer,
  TestcontainersProvider,
} from '@tsraft/testing';
import type { Target } from './client-protocol.ts';
import { EtcdCluster, findEtcd } from './etcd-cluster.ts';
import { type PostgresCounters, PostgresProbe } from './postgres-probe.ts';
import { ClientProcess, ServerProcess } from './processes.ts';
import { printReport, type RunResult, type SystemName } from './report.ts';

const APP_SERVER = fileURLToPath(new URL('./app-server.ts', import.meta.url));
const LOAD_CLIENT = fileURLToPath(new URL('./load-client.ts', import.meta.url));
const DATA_ROOT = fileURLToPath(new URL('../../../.data/bench-e2e/', import.meta.url));
/** Backends flush their statistics about a second after they go idle. */
const STATS_SETTLE_MS = 1_200;

/** What `--help` prints. */
const USAGE = `Usage: ./dev bench:e2e [options]

Options (all optional):
  --inflight 1,16,64,256   writes in flight
  --rounds 2               runs per system and level
  --warmup 2 --window 6    seconds of warm-up and of measurement per run
  --systems tsraft,postgres,etcd   also: tsraft-batch (httpBatchLink)
  --start-at follower      where the tsraft client's failover link starts: follower or leader
  --cpu-prof DIR           write V8 CPU profiles of the node and client processes into DIR
  --baseline REF           also run tsraft (and tsraft-batch) as of the git commit REF, its own
                           nodes and client from a copy of REF (which must hold this
                           benchmark), interleaved with the others: before and after in one run
  --tick-ms N              the nodes' tickMs (default: the node's default)
  --help                   print this and exit

Postgres: TSRAFT_PG_PROVIDER = embedded (default), testcontainers (image from TSRAFT_PG_IMAGE)
or external (TSRAFT_PG_URLS, four URLs).`;

const SYSTEMS = ['tsraft', 'tsraft-batch', 'postgres', 'etcd'] as const;
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

const { levels, rounds, warmupMs, windowMs, wanted, startAt, profileDir, tickMs, baselineCommit } =
  await benchCommandLine(
    {
      program: 'bench:e2e',
      options: {
        inflight: { type: 'string', default: '1,16,64,256' },
        rounds: { type: 'string', default: '2' },
        warmup: { type: 'string', default: '2' },
        window: { type: 'string', default: '6' },
        systems: { type: 'string', default: 'tsraft,postgres,etcd' },
        'start-at': { type: 'string', default: 'follower' },
        'cpu-prof': { type: 'string' },
        baseline: { type: 'string' },
        'tick-ms': { type: 'string' },
      },
      usage: USAGE,
    },
    async ({ values }) => ({
      levels: integerListOption('--inflight', values.inflight, { min: 1 }),
      rounds: integerOption('--rounds', values.rounds, { min: 1 }),
      warmupMs: numberOption('--warmup', values.warmup, { atLeast: 0 }) * 1000,
      windowMs: numberOption('--window', values.window, { above: 0 }) * 1000,
      wanted: new Set(choiceListOption('--systems', values.systems, SYSTEMS)),
      startAt: choiceOption('--start-at', values['start-at'], ['follower', 'leader']),
      profileDir: values['cpu-prof'],
      tickMs:
        values['tick-ms'] === undefined
          ? undefined
          : String(numberOption('--tick-ms', values['tick-ms'], { above: 0 })),
      baselineCommit:
        values.baseline === undefined
          ? undefined
          : await commitOption('--baseline', values.baseline, REPO),
    }),
  );
const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];

/** A system the client writes to, and what is measured of it. */
interface System {
  readonly name: SystemName;
  /** The client process to write from, when not the common one (a baseline's own). */
  readonly client?: ClientProcess;
  readonly target: () => Promise<Target>;
  /** Server-side processes (not Postgres): label and pid. */
  readonly processes: () => Promise<readonly { label: string; pid: number }[]>;
  readonly postgres: readonly PostgresProbe[];
  /**
   * For a tsraft system: the `put` calls its followers served so far (each took the forwarding
   * hop), or `undefined` when its nodes do not count them (a baseline older than the counter).
   */
  readonly followerPuts?: () => Promise<number | undefined>;
  /** WAL fsyncs and transactions so far, when known (Postgres' counters, etcd's metrics). */
  readonly counters: () => Promise<{ walSyncs: number; transactions: number | undefined }>;
}

await mkdir(DATA_ROOT, { recursive: true });
const cleanup: AsyncDisposable[] = [];
try {
  await main();
} finally {
  for (const resource of cleanup.reverse()) {
    try {
      await resource[Symbol.asyncDispose]();
    } catch (error) {
      console.error(`cleanup failed: ${String(error)}`);
    }
  }
}

async function main(): Promise<void> {
  const provider = postgresProvider();
  const etcdBinary = wanted.has('etcd') ? await findEtcd() : undefined;
  const needsRaft = wanted.has('tsraft') || wanted.has('tsraft-batch');
  console.info(
    `bench:e2e: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, Postgres from the ${provider.name} provider`,
  );
  if (wanted.has('etcd') && etcdBinary === undefined) {
    console.info(
      'etcd: no `etcd` binary on the PATH, skipped (scripts/install-etcd.sh installs it)',
    );
  }

  const baseline =
    baselineCommit === undefined
      ? undefined
      : {
          label: baselineCommit,
          root: await baselineTree({
            repo: REPO,
            commit: baselineCommit,
            dir: DATA_ROOT,
            marker: 'integration/bench/e2e/app-server.ts',
          }),
        };
  const raftClusters = needsRaft ? (baseline === undefined ? 1 : 2) : 0;
  const servers = await Promise.all(
    Array.from({ length: 3 * raftClusters + (wanted.has('postgres') ? 1 : 0) }, () =>
      provider.start(),
    ),
  );
  cleanup.push(...servers);
  const systems: System[] = [];
  if (baseline !== undefined && needsRaft) {
    const client = await ClientProcess.start({
      entry: join(baseline.root, 'integration/bench/e2e/load-client.ts'),
      nodeFlags,
    });
    cleanup.push(client);
    systems.push(
      ...(await startRaft(servers.slice(3, 6), {
        appServer: join(baseline.root, 'integration/bench/e2e/app-server.ts'),
        suffix: `@${baseline.label}`,
        client,
      })),
    );
  }
  if (needsRaft)
    systems.push(...(await startRaft(servers.slice(0, 3), { appServer: APP_SERVER, suffix: '' })));
  if (wanted.has('postgres')) systems.push(await startDirect(servers.at(-1) as PostgresServer));
  if (etcdBinary !== undefined) systems.push(await startEtcd(etcdBinary));

  const client = await ClientProcess.start({ entry: LOAD_CLIENT, nodeFlags });
  cleanup.push(client);
  const results: RunResult[] = [];
  for (const inflight of levels) {
    for (let round = 0; round < rounds; round++) {
      const order = systems.map((_, i) => systems[(i + round) % systems.length] as System);
      for (const system of order) {
        const result = await measure(system.client ?? client, system, inflight);
        results.push(result);
        console.info(
          `  ${String(inflight).padStart(3)} in flight, ${system.name.padEnd(12)} ${Math.round(result.writesPerSecond).toLocaleString('en-US').padStart(6)} writes/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, ${result.cpuPerWrite.total.toFixed(3)} ms CPU/write${result.viaFollower === undefined ? '' : `, ${result.viaFollower} of ${result.writes} writes via a follower`}${result.errors > 0 ? `, ${result.errors} errors (${result.firstError})` : ''}`,
        );
      }
    }
  }
  const idle: { name: SystemName; cpuPerSecond: number }[] = [];
  for (const system of systems)
    idle.push({ name: system.name, cpuPerSecond: await idleCpu(system) });
  printReport({
    results,
    idle,
    levels,
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, Postgres: ${provider.name}`,
  });
}

async function startRaft(
  servers: readonly PostgresServer[],
  options: { appServer: string; suffix: string; client?: ClientProcess },
): Promise<System[]> {
  const secret = randomBytes(24).toString('hex');
  const ids = ['n1', 'n2', 'n3'];
  const peers: Record<string, string> = {};
  for (const id of ids) peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
  const nodes = await Promise.all(
    ids.map((id, i) =>
      ServerProcess.start({
        label: id,
        entry: options.appServer,
        nodeFlags,
        env: {
          ...(tickMs === undefined ? {} : { TSRAFT_TICK_MS: tickMs }),
          TSRAFT_BENCH_MODE: 'replicated',
          TSRAFT_NODE_ID: id,
          TSRAFT_PEERS: JSON.stringify(peers),
          TSRAFT_SECRET: secret,
          DATABASE_URL: (servers[i] as PostgresServer).url,
        },
      }),
    ),
  );
  cleanup.push(...nodes);
  const probes = await Promise.all(servers.map((server) => PostgresProbe.open(server.url)));
  cleanup.push(...probes);
  const appUrls = Object.fromEntries(ids.map((id) => [id, `${peers[id]}/trpc`]));
  const leader = async (): Promise<string> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const statuses = await Promise.all(
        ids.map((id) =>
          fetch(`${appUrls[id]}/raftAdmin.status`, { headers: { 'x-admin': secret } })
            .then(
              (response) =>
                response.json() as Promise<{
                  result?: { data?: { leaderId?: string; role?: string; id?: string } };
                }>,
            )
            .then((body) => body.result?.data)
            .catch(() => undefined),
        ),
      );
      const leaders = statuses.filter((status) => status?.role === 'leader');
      if (leaders.length === 1 && statuses.every((status) => status?.leaderId === leaders[0]?.id)) {
        return leaders[0]?.id as string;
      }
      if (Date.now() > deadline) throw new Error('the tsraft cluster elected no leader in 30 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  console.info(`tsraft${options.suffix}: 3 nodes up, leader ${await leader()}`);
  const make = (name: SystemName, batch: boolean): System => ({
    name,
    ...(options.client === undefined ? {} : { client: options.client }),
    target: async () => {
      const leaderId = await leader();
      const initial =
        startAt === 'leader' ? leaderId : (ids.find((id) => id !== leaderId) as string);
      return { kind: 'replicated', name, nodes: appUrls, initial, batch };
    },
    processes: async () => {
      const leaderId = await leader();
      return nodes.map((node) => ({
        label: node.label === leaderId ? `${node.label} (leader)` : node.label,
        pid: node.pid,
      }));
    },
    postgres: probes,
    followerPuts: async () => {
      const leaderId = await leader();
      const counts = await Promise.all(
        ids
          .filter((id) => id !== leaderId)
          .map(async (id) => {
            const response = await fetch(`${peers[id]}/bench/puts`).catch(() => undefined);
            return response?.ok === true ? Number(await response.text()) : undefined;
          }),
      );
      return counts.every((count) => count !== undefined && Number.isSafeInteger(count))
        ? counts.reduce((sum: number, count) => sum + (count as number), 0)
        : undefined;
    },
    counters: () => postgresCounters(probes),
  });
  const systems: System[] = [];
  if (wanted.has('tsraft')) systems.push(make(`tsraft${options.suffix}`, false));
  if (wanted.has('tsraft-batch')) systems.push(make(`tsraft-batch${options.suffix}`, true));
  return systems;
}

async function startDirect(server: PostgresServer): Promise<System> {
  const url = `http://127.0.0.1:${await pickLoopbackPort()}`;
  const app = await ServerProcess.start({
    label: 'app',
    entry: APP_SERVER,
    nodeFlags,
    env: { TSRAFT_BENCH_MODE: 'direct', TSRAFT_URL: url, DATABASE_URL: server.url },
  });
  cleanup.push(app);
  const probe = await PostgresProbe.open(server.url);
  cleanup.push(probe);
  return {
    name: 'postgres',
    target: async () => ({ kind: 'direct', name: 'postgres', url: `${url}/trpc`, batch: false }),
    processes: async () => [{ label: 'app', pid: app.pid }],
    postgres: [probe],
    counters: () => postgresCounters([probe]),
  };
}

async function startEtcd(binary: string): Promise<System> {
  const cluster = await EtcdCluster.start({ binary, root: DATA_ROOT });
  cleanup.push(cluster);
  console.info(`etcd: 3 members up (${binary})`);
  return {
    name: 'etcd',
    target: async () => ({ kind: 'etcd', name: 'etcd', hosts: cluster.clientUrls }),
    processes: async () =>
      cluster.processes.map((child, i) => ({ label: `e${i + 1}`, pid: child.pid as number })),
    postgres: [],
    counters: async () => ({ walSyncs: await cluster.walSyncs(), transactions: undefined }),
  };
}

async function postgresCounters(
  probes: readonly PostgresProbe[],
): Promise<{ walSyncs: number; transactions: number }> {
  const all: PostgresCounters[] = await Promise.all(probes.map((probe) => probe.counters()));
  return {
    walSyncs: all.reduce((sum, c) => sum + c.walSyncs, 0),
    transactions: all.reduce((sum, c) => sum + c.transactions, 0),
  };
}

/** CPU seconds so far of the client, of each server process, and of the Postgres servers. */
async function sampleCpu(
  client: ClientProcess,
  processes: readonly { label: string; pid: number }[],
  system: System,
): Promise<{ client: number; processes: number[]; postgres: number | undefined }> {
  const [clientCpu, processCpus, postgres] = await Promise.all([
    processCpu(client.pid),
    Promise.all(processes.map((p) => processCpu(p.pid))),
    Promise.all(system.postgres.map((probe) => probe.counters())),
  ]);
  const measured = postgres.every((c) => c.cpu !== undefined);
  return {
    client: clientCpu,
    processes: processCpus,
    postgres:
      system.postgres.length === 0 || !measured
        ? undefined
        : postgres.reduce((sum, c) => sum + (c.cpu ?? 0), 0),
  };
}

async function measure(
  client: ClientProcess,
  system: System,
  inflight: number,
): Promise<RunResult> {
  const target = await system.target();
  const processes = await system.processes();
  const before = await system.counters();
  const followerPutsBefore = await system.followerPuts?.();
  let start: Awaited<ReturnType<typeof sampleCpu>> | undefined;
  let end: Awaited<ReturnType<typeof sampleCpu>> | undefined;
  const report = await client.run({ target, inflight, warmupMs, windowMs }, async (edge) => {
    const sample = await sampleCpu(client, processes, system);
    if (edge === 'start') start = sample;
    else end = sample;
  });
  await new Promise((resolve) => setTimeout(resolve, STATS_SETTLE_MS));
  const after = await system.counters();
  const followerPutsAfter = await system.followerPuts?.();
  if (start === undefined || end === undefined) throw new Error('the window was not sampled');
  const writes = Math.max(1, report.windowWrites);
  const s = start;
  const e = end;
  const perWrite = (seconds: number): number => (seconds * 1000) / writes;
  const processCpus = processes.map((p, i) => ({
    label: p.label,
    ms: perWrite((e.processes[i] ?? 0) - (s.processes[i] ?? 0)),
  }));
  const clientMs = perWrite(e.client - s.client);
  const postgresMs =
    e.postgres === undefined || s.postgres === undefined
      ? undefined
      : perWrite(e.postgres - s.postgres);
  const servers = processCpus.reduce((sum, p) => sum + p.ms, 0);
  const total = Math.max(1, report.total);
  return {
    system: system.name,
    inflight,
    writesPerSecond: report.windowWrites / report.seconds,
    p50: report.p50,
    p99: report.p99,
    cpuPerWrite: {
      client: clientMs,
      processes: processCpus,
      servers,
      postgres: postgresMs,
      total: clientMs + servers + (postgresMs ?? 0),
    },
    walSyncsPerWrite: (after.walSyncs - before.walSyncs) / total,
    transactionsPerWrite:
      after.transactions === undefined || before.transactions === undefined
        ? undefined
        : (after.transactions - before.transactions) / total,
    startedAt: target.kind === 'replicated' ? target.initial : undefined,
    viaFollower:
      followerPutsBefore === undefined || followerPutsAfter === undefined
        ? undefined
        : followerPutsAfter - followerPutsBefore,
    writes: report.total,
    errors: report.errors,
    firstError: report.firstError,
  };
}

/** CPU ms per second of a system at rest (its processes and Postgres), over 3 s. */
async function idleCpu(system: System): Promise<number> {
  const processes = await system.processes();
  const sample = async (): Promise<number> => {
    const cpus = await Promise.all(processes.map((p) => processCpu(p.pid)));
    const postgres = await Promise.all(system.postgres.map((probe) => probe.counters()));
    return cpus.reduce((a, b) => a + b, 0) + postgres.reduce((a, c) => a + (c.cpu ?? 0), 0);
  };
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const before = await sample();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const after = await sample();
  return ((after - before) * 1000) / ((performance.now() - started) / 1000);
}

function postgresProvider(): PostgresProvider {
  const name = process.env.TSRAFT_PG_PROVIDER?.trim() || 'embedded';
  switch (name) {
    case 'embedded':
      return new EmbeddedProvider();
    case 'testcontainers':
      return new TestcontainersProvider();
    case 'external':
      return new ExternalProvider();
    default:
      throw new Error(
        `TSRAFT_PG_PROVIDER="${name}": use embedded (default), testcontainers or external`,
      );
  }
}
