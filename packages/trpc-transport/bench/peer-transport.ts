/**
 * Benchmark of the tRPC peer transport over loopback: AppendEntries round trips/s and MB/s, one
 * node sending to another (real HTTP on 127.0.0.1, signed, validated, answered with an ack).
 *
 *   pnpm --filter @tsraft/trpc-transport bench [--seconds 2]
 *
 * Workloads: empty AppendEntries (a heartbeat's cost) and batches of 64 x 256-byte entries, each
 * with 1 and 16 requests in flight. Then where the time of one round trip goes: the CPU cost of
 * each step measured alone in this process (encode, sign, verify, decode, validate), and reference
 * round trips over the same loopback: a plain POST to a bare Node HTTP server with `node:http` (the
 * floor of HTTP itself, and what the transport sends with by default) and with `fetch`, and a
 * signed `fetch` to the peer server (the server without the transport's client). Last, the tRPC
 * plugin's replicated mutations/s (`bench/replicated-mutations.ts`).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { benchCommandLine, numberOption } from '@tsraft/bench-cli';
import type { LogEntry, Message, PeerRequest } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { raftInput } from '../src/peer-schemas.ts';
import { bodyDigest, PeerSignature, SIGNATURE_HEADERS, sameDigest } from '../src/peer-signature.ts';
import { peerTransformer } from '../src/peer-wire.ts';
import { createTrpcTransport } from '../src/trpc-transport.ts';
import { benchReplicatedMutations } from './replicated-mutations.ts';

const { seconds, serveAt } = await benchCommandLine(
  {
    program: 'trpc-transport bench',
    options: {
      seconds: { type: 'string', default: '2' },
      /** Internal: run as the receiving node, in its own process, on these two ports. */
      serve: { type: 'string' },
    },
    internal: ['serve'],
  },
  ({ values }) => ({
    seconds: numberOption('--seconds', values.seconds, { above: 0, atMost: 600 }),
    serveAt: values.serve,
  }),
);

const SECRET = 'the benchmark cluster secret';

/** A request body as the peer client writes it. */
function encode(request: PeerRequest): string {
  return JSON.stringify(peerTransformer.serialize(request));
}

function appendEntries(count: number, bytes: number): Message {
  const entries: LogEntry[] = Array.from({ length: count }, (_, i) => {
    const data = new Uint8Array(bytes);
    crypto.getRandomValues(data);
    return { index: i + 1, term: 1, type: 'command', data };
  });
  return {
    type: 'append',
    from: 'n1',
    to: 'n2',
    term: 1,
    prevIndex: 0,
    prevTerm: 0,
    entries,
    commit: 0,
  };
}

interface Row {
  readonly workload: string;
  readonly inFlight: number;
  readonly roundTrips: number;
  readonly seconds: number;
  readonly payloadBytes: number;
  readonly wireBytes: number;
  readonly latencies: number[];
}

/** Runs `call` with `inFlight` loops for `seconds`, after a short warm-up. */
async function measure(
  workload: string,
  inFlight: number,
  payloadBytes: number,
  wireBytes: number,
  call: () => Promise<unknown>,
): Promise<Row> {
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) await call();
  const latencies: number[] = [];
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await call();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return {
    workload,
    inFlight,
    roundTrips: latencies.length,
    seconds: elapsed,
    payloadBytes,
    wireBytes,
    latencies,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

function printRows(rows: Row[]): void {
  const table = rows.map((row) => {
    const sorted = [...row.latencies].sort((a, b) => a - b);
    const perSecond = row.roundTrips / row.seconds;
    return {
      workload: row.workload,
      'in flight': row.inFlight,
      'round trips/s': Math.round(perSecond),
      'payload MB/s': ((perSecond * row.payloadBytes) / 1e6).toFixed(1),
      'wire MB/s': ((perSecond * row.wireBytes) / 1e6).toFixed(1),
      'p50 ms': percentile(sorted, 0.5).toFixed(3),
      'p99 ms': percentile(sorted, 0.99).toFixed(3),
    };
  });
  console.table(table);
}

/** POSTs `body` with `node:http` through `agent` and reads the whole answer. */
function postWithNodeHttp(url: string, body: string, agent: Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Mean microseconds of `fn` over about 300 ms. */
function microseconds(fn: () => unknown): number {
  for (let i = 0; i < 200; i += 1) fn();
  let runs = 0;
  const started = performance.now();
  while (performance.now() - started < 300) {
    fn();
    runs += 1;
  }
  return ((performance.now() - started) * 1000) / runs;
}

/** The receiving node n2, in a process of its own (so each end has a core): acks everything. */
async function serve(ports: string): Promise<void> {
  const [p1, p2] = ports.split(',');
  const peers = { n1: `http://127.0.0.1:${p1}`, n2: `http://127.0.0.1:${p2}` };
  const transport = createTrpcTransport({ nodeId: 'n2', peers, secret: SECRET });
  await transport.listen(async () => ({ type: 'ack' }));
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => void transport.close());
}

/** Starts n2 in a child process and resolves once it listens. */
async function startReceiver(ports: number[]): Promise<() => void> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, new URL(import.meta.url).pathname, '--serve', ports.join(',')],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the receiver exited with ${code}`)));
    child.stdout.once('data', () => resolve());
  });
  return () => {
    child.stdin.end();
    child.kill();
  };
}

async function main(): Promise<void> {
  const ports = await Promise.all([0, 1].map(() => pickLoopbackPort()));
  const peers = { n1: `http://127.0.0.1:${ports[0]}`, n2: `http://127.0.0.1:${ports[1]}` };
  const stopReceiver = await startReceiver(ports);
  const n1 = createTrpcTransport({ nodeId: 'n1', peers, secret: SECRET, listen: false });
  const workloads: { name: string; request: PeerRequest; payload: number }[] = [
    {
      name: 'empty AppendEntries',
      request: { type: 'raft', messages: [appendEntries(0, 0)] },
      payload: 0,
    },
    {
      name: '64 x 256 B entries',
      request: { type: 'raft', messages: [appendEntries(64, 256)] },
      payload: 64 * 256,
    },
  ];

  console.log(
    `tRPC peer transport over loopback, sender and receiver in two processes, ${seconds} s per row, Node ${process.version}`,
  );
  const rows: Row[] = [];
  for (const workload of workloads) {
    const wire = Buffer.byteLength(encode(workload.request));
    for (const inFlight of [1, 16]) {
      rows.push(
        await measure(workload.name, inFlight, workload.payload, wire, () =>
          n1.request('n2', workload.request, { signal: AbortSignal.timeout(5000) }),
        ),
      );
    }
  }
  printRows(rows);

  // Where the time goes: each step alone, in microseconds of CPU per request.
  const signature = new PeerSignature(SECRET);
  const steps = workloads.map(({ name, request }) => {
    const body = encode(request);
    const bytes = Buffer.from(body);
    const parts = {
      method: 'POST',
      path: '/raft/raft',
      from: 'n1',
      to: 'n2',
      timestamp: '1',
      nonce: 'AAAAAAAAAAAAAAAAAAAAAA.1',
      bodyDigest: bodyDigest(body),
    };
    const signed = signature.sign(parts);
    const parsed = peerTransformer.deserialize(JSON.parse(body));
    return {
      workload: name,
      'body bytes': bytes.byteLength,
      'encode µs': microseconds(() => encode(request)).toFixed(1),
      'sign µs': microseconds(() =>
        signature.sign({ ...parts, bodyDigest: bodyDigest(body) }),
      ).toFixed(1),
      'verify µs': microseconds(
        () =>
          signature.verify(parts, signed) &&
          sameDigest(parts.bodyDigest, createHash('sha256').update(bytes).digest()),
      ).toFixed(1),
      'decode µs': microseconds(() =>
        peerTransformer.deserialize(JSON.parse(bytes.toString('utf8'))),
      ).toFixed(1),
      'validate µs': microseconds(() => raftInput.parse(parsed)).toFixed(1),
    };
  });
  console.log(
    '\nCPU per request, each step alone (client: encode + sign; server: verify + decode (JSON.parse) + validate (zod, base64 decoding))',
  );
  console.table(steps);

  // Reference round trips, sequential: HTTP alone, and the transport's server without its client.
  const bare = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end('{"result":{"data":{"json":{"type":"ack"}}}}');
    });
  });
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/raft/raft`;
  const agent = new Agent({ keepAlive: true });
  const references: Row[] = [];
  const stream = randomBytes(16).toString('base64url');
  let counter = 0;
  for (const workload of workloads) {
    const body = encode(workload.request);
    const wire = Buffer.byteLength(body);
    references.push(
      await measure(`node:http, bare server: ${workload.name}`, 1, workload.payload, wire, () =>
        postWithNodeHttp(bareUrl, body, agent),
      ),
    );
    references.push(
      await measure(`fetch, bare server: ${workload.name}`, 1, workload.payload, wire, async () => {
        const response = await fetch(bareUrl, { method: 'POST', body });
        await response.json();
      }),
    );
    references.push(
      await measure(
        `signed fetch, peer server: ${workload.name}`,
        1,
        workload.payload,
        wire,
        async () => {
          const fresh = encode(workload.request);
          const parts = {
            method: 'POST',
            path: '/raft/raft',
            from: 'n1',
            to: 'n2',
            timestamp: String(Date.now()),
            nonce: `${stream}.${++counter}`,
            bodyDigest: bodyDigest(fresh),
          };
          const response = await fetch(`${peers.n2}/raft/raft`, {
            method: 'POST',
            body: fresh,
            headers: {
              'content-type': 'application/json',
              [SIGNATURE_HEADERS.from]: 'n1',
              [SIGNATURE_HEADERS.timestamp]: parts.timestamp,
              [SIGNATURE_HEADERS.nonce]: parts.nonce,
              [SIGNATURE_HEADERS.bodyDigest]: parts.bodyDigest,
              [SIGNATURE_HEADERS.signature]: signature.sign(parts),
            },
          });
          if (response.status !== 200) throw new Error(`status ${response.status}`);
          await response.json();
        },
      ),
    );
  }
  console.log('\nReference round trips, 1 in flight');
  printRows(references);

  agent.destroy();
  bare.closeAllConnections();
  bare.close();
  await n1.close();
  stopReceiver();

  await benchReplicatedMutations({ seconds });
}

if (serveAt === undefined) await main();
else await serve(serveAt);
