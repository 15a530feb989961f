/**
 * Abuse benchmark of the safe defaults of `createRaftHttpServer` and the peer transport: the
 * memory of the process hosting a 3-node cluster (in-memory stores, KV state machine, one
 * `createRaftHttpServer` per node serving the app under `/trpc` and the peers under `/raft`)
 * before, at its peak during, and 10 s after each abuse, and whether leadership moved.
 *
 *   ./dev --filter @tsraft/trpc-transport bench:abuse [--settle-seconds 10]
 *
 * The cluster runs in a child process (this file with `--cluster`), so the attacker's own memory
 * (this process) is not counted; RSS is sampled every 100 ms over IPC. Peers reach each other
 * through a proxy per node in this process: normally it forwards, and during abuse 3 the proxy of
 * one follower answers the leader's requests itself with a 100 MiB body, then a body that never
 * ends (a peer holding the secret that answers badly).
 *
 * Abuses: (1) four concurrent 200 MiB POSTs to the leader's app endpoint, with `Content-Length`
 * and chunked (no length); (2) eight concurrent 60 MiB peer requests with a bad signature;
 * (3) as above. The attacking bodies are streamed from one 1 MiB buffer, never built whole.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { initTRPC } from '@trpc/server';
import { benchCommandLine, numberOption } from '@tsraft/bench-cli';
import { type NodeId, RaftNode } from '@tsraft/core';
import {
  type KvCommand,
  type KvResult,
  KvStateMachine,
  MemoryLogStore,
  MemorySnapshotStore,
} from '@tsraft/core/testing';
import { createRaftHttpServer } from '../src/raft-http-server.ts';
import { createRaftProcedures } from '../src/raft-procedures.ts';
import { createTrpcTransport } from '../src/trpc-transport.ts';
import { kvCommand } from './kv-command.ts';

const SECRET = 'the abuse benchmark cluster secret';
const IDS: NodeId[] = ['n1', 'n2', 'n3'];
const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(MiB, 0x61);

/** What the cluster process answers to a `sample` message. */
interface Sample {
  readonly rss: number;
  readonly leader: NodeId | undefined;
  readonly term: number;
}

// ---------------------------------------------------------------- the cluster (child process)

/** Starts the 3 nodes whose peer URLs are `peers`, then serves `sample` messages. */
async function runCluster(peers: Record<NodeId, string>): Promise<void> {
  const nodes: RaftNode<KvCommand, KvResult>[] = [];
  const ports: Record<NodeId, number> = {};
  const starting = IDS.map(async (id) => {
    const transport = createTrpcTransport({ nodeId: id, peers, secret: SECRET, listen: false });
    let node: RaftNode<KvCommand, KvResult> | undefined;
    const raft = createRaftProcedures({
      node: () => node as RaftNode<KvCommand, KvResult>,
      command: kvCommand,
    });
    const router = initTRPC.create().router({ execute: raft.replicatedMutation });
    const server = createRaftHttpServer({ router, transport, raft, basePath: '/trpc' });
    ports[id] = (await server.listen({ port: 0 })).port;
    return async () => {
      node = await RaftNode.start<KvCommand, KvResult>({
        id,
        config: { voters: IDS },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: new KvStateMachine(),
        transport,
      });
      nodes.push(node);
    };
  });
  const starts = await Promise.all(starting);
  process.send?.({ type: 'ports', ports });
  await Promise.all(starts.map((start) => start()));
  process.on('message', () => {
    const leader = nodes.find((node) => node.status().role === 'leader');
    const term = Math.max(...nodes.map((node) => node.status().term));
    const sample: Sample = { rss: process.memoryUsage().rss, leader: leader?.id, term };
    process.send?.(sample);
  });
}

// ---------------------------------------------------------------- the attacker (this process)

type ProxyMode = 'forward' | 'huge' | 'endless';

/** A proxy in front of one node's port; `mode` decides how it answers. */
interface PeerProxy {
  readonly server: Server;
  target: number | undefined;
  mode: ProxyMode;
  /** Requests answered with an abusive body so far. */
  abusiveAnswers: number;
}

function startProxy(): Promise<PeerProxy> {
  const proxy: PeerProxy = {
    server: createServer(),
    target: undefined,
    mode: 'forward',
    abusiveAnswers: 0,
  };
  proxy.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (proxy.mode !== 'forward' || proxy.target === undefined) {
      req.resume();
      if (proxy.target === undefined) return void res.writeHead(503).end();
      const huge = proxy.mode === 'huge';
      proxy.abusiveAnswers++;
      res.writeHead(200, {
        'content-type': 'application/json',
        ...(huge ? { 'content-length': String(100 * MiB) } : {}),
      });
      streamBody(res, huge ? 100 : Number.POSITIVE_INFINITY);
      return;
    }
    const upstream = request(
      {
        host: '127.0.0.1',
        port: proxy.target,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => proxy.server.listen(0, '127.0.0.1', () => resolve(proxy)));
}

/** Writes `mebibytes` of `CHUNK` to `out` with backpressure; stops when `out` is closed. */
function streamBody(out: NodeJS.WritableStream & { destroyed: boolean }, mebibytes: number): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < mebibytes && !out.destroyed) {
      sent++;
      if (!out.write(CHUNK)) return void out.once('drain', pump);
    }
    if (!out.destroyed) out.end();
  };
  out.on('error', () => undefined);
  pump();
}

/** POSTs a streamed body of `mebibytes` to `port` and `path`; resolves with the status or error. */
function post(
  port: number,
  path: string,
  mebibytes: number,
  headers: Record<string, string>,
): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
      res.on('error', () => resolve(String(res.statusCode)));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    streamBody(req, mebibytes);
  });
}

class ClusterProcess {
  readonly #child: ChildProcess;
  readonly #waiting: ((sample: Sample) => void)[] = [];

  constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (message: Sample | { type: 'ports' }) => {
      if ('rss' in message) this.#waiting.shift()?.(message);
    });
  }

  sample(): Promise<Sample> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#child.send('sample');
    });
  }

  kill(): void {
    this.#child.kill();
  }
}

interface Row {
  readonly abuse: string;
  readonly outcome: string;
  readonly before: Sample;
  readonly peak: number;
  readonly after: Sample;
}

/** Runs `abuse`, sampling RSS every 100 ms until `settleSeconds` after it ended. */
async function measure(
  cluster: ClusterProcess,
  abuse: string,
  settleSeconds: number,
  run: () => Promise<string>,
): Promise<Row> {
  const before = await cluster.sample();
  let peak = before.rss;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, (await cluster.sample()).rss);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const outcome = await run();
  await new Promise((resolve) => setTimeout(resolve, settleSeconds * 1000));
  sampling = false;
  await sampler;
  const after = await cluster.sample();
  peak = Math.max(peak, after.rss);
  console.log(`  ${abuse}: ${outcome}`);
  return { abuse, outcome, before, peak, after };
}

async function leaderSample(cluster: ClusterProcess): Promise<Sample & { leader: NodeId }> {
  for (;;) {
    const sample = await cluster.sample();
    if (sample.leader !== undefined) return sample as Sample & { leader: NodeId };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function tally(outcomes: string[]): string {
  const counts = new Map<string, number>();
  for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  return [...counts].map(([outcome, count]) => `${count}× ${outcome}`).join(', ');
}

async function runAttacker(settleSeconds: number): Promise<void> {
  const proxies = new Map<NodeId, PeerProxy>();
  for (const id of IDS) proxies.set(id, await startProxy());
  const peers = Object.fromEntries(
    IDS.map((id) => {
      const port = ((proxies.get(id) as PeerProxy).server.address() as AddressInfo).port;
      return [id, `http://127.0.0.1:${port}`];
    }),
  );
  const child = fork(import.meta.filename, ['--cluster', JSON.stringify(peers)], {
    execArgv: process.execArgv,
  });
  const ports = await new Promise<Record<NodeId, number>>((resolve) =>
    child.once('message', (message: { ports: Record<NodeId, number> }) => resolve(message.ports)),
  );
  for (const id of IDS) (proxies.get(id) as PeerProxy).target = ports[id];
  const cluster = new ClusterProcess(child);
  const first = await leaderSample(cluster);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const leader = (await leaderSample(cluster)).leader;
  const leaderPort = ports[leader] as number;
  const follower = IDS.find((id) => id !== leader) as NodeId;
  console.log(`\nAbuse of a 3-node cluster (leader ${leader}, elected in term ${first.term})`);

  const rows: Row[] = [];
  const appPost = (chunked: boolean) => () =>
    Promise.all(
      Array.from({ length: 4 }, () =>
        post(leaderPort, '/trpc/execute', 200, {
          'content-type': 'application/json',
          ...(chunked ? {} : { 'content-length': String(200 * MiB) }),
        }),
      ),
    ).then(tally);
  rows.push(
    await measure(
      cluster,
      '1a app: 4 × 200 MiB POST, Content-Length',
      settleSeconds,
      appPost(false),
    ),
  );
  rows.push(
    await measure(cluster, '1b app: 4 × 200 MiB POST, chunked', settleSeconds, appPost(true)),
  );
  rows.push(
    await measure(cluster, '2 peer: 8 × 60 MiB, bad signature', settleSeconds, () =>
      Promise.all(
        Array.from({ length: 8 }, () =>
          post(leaderPort, '/raft/raft', 60, {
            'content-type': 'application/json',
            'content-length': String(60 * MiB),
            'x-tsraft-from': follower,
            'x-tsraft-timestamp': String(Date.now()),
            'x-tsraft-nonce': `${randomBytes(16).toString('hex')}.1`,
            'x-tsraft-body-sha256': randomBytes(32).toString('base64url'),
            'x-tsraft-signature': randomBytes(32).toString('base64url'),
          }),
        ),
      ).then(tally),
    ),
  );
  const evil = proxies.get(follower) as PeerProxy;
  for (const mode of ['huge', 'endless'] as const) {
    const label =
      mode === 'huge'
        ? `3a peer ${follower} answers 100 MiB bodies, 10 s`
        : `3b peer ${follower} answers never-ending bodies, 10 s`;
    rows.push(
      await measure(cluster, label, settleSeconds, async () => {
        const answered = evil.abusiveAnswers;
        evil.mode = mode;
        await new Promise((resolve) => setTimeout(resolve, 10_000));
        evil.mode = 'forward';
        return `${evil.abusiveAnswers - answered} requests to ${follower} answered abusively`;
      }),
    );
  }

  console.log(
    `\nRSS of the process hosting the 3 nodes (the leader among them), MiB; after = ${settleSeconds} s after the abuse ended`,
  );
  console.table(
    rows.map((row) => ({
      abuse: row.abuse,
      'before MiB': Math.round(row.before.rss / MiB),
      'peak MiB': Math.round(row.peak / MiB),
      'after MiB': Math.round(row.after.rss / MiB),
      'leader before→after': `${row.before.leader}@${row.before.term} → ${row.after.leader}@${row.after.term}`,
      'leadership moved':
        row.before.leader !== row.after.leader || row.before.term !== row.after.term ? 'yes' : 'no',
    })),
  );
  cluster.kill();
  for (const proxy of proxies.values()) {
    proxy.server.closeAllConnections();
    proxy.server.close();
  }
}

const { cluster, settleSeconds } = await benchCommandLine(
  {
    program: 'trpc-transport bench:abuse',
    options: {
      /** Internal: run as the cluster, in its own process, with these node URLs (JSON). */
      cluster: { type: 'string' },
      'settle-seconds': { type: 'string', default: '10' },
    },
    internal: ['cluster'],
  },
  ({ values }) => ({
    cluster: values.cluster,
    settleSeconds: numberOption('--settle-seconds', values['settle-seconds'], {
      atLeast: 0,
      atMost: 120,
    }),
  }),
);
if (cluster !== undefined) {
  await runCluster(JSON.parse(cluster) as Record<NodeId, string>);
} else {
  await runAttacker(settleSeconds);
}
