/**
 * The client process of `bench:e2e` (forked by `main.ts`, commands over the IPC channel): keeps
 * `inflight` writes outstanding against one system, closed loop, each a `put` of a 256-byte
 * value to one of 10,000 keys, and reports writes and latencies.
 *
 * A run: `warmupMs` of load, then a measured window of `windowMs` (announced with
 * `window-start` and `window-end` messages, so the parent can sample CPU at its edges), then the
 * writes in flight finish and `done` reports the window's numbers and the total of acknowledged
 * writes (warm-up and drain included).
 */
import { createTRPCClient, httpBatchLink, httpLink, type TRPCClient } from '@trpc/client';
import type { NodeId } from '@tsraft/core';
import { raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport';
import type { DirectAppRouter, ReplicatedAppRouter } from './bench-app.ts';
import type { ClientCommand, ClientReport, Target } from './client-protocol.ts';

const KEYS = 10_000;
const VALUE = Array.from({ length: 256 }, (_, i) => String.fromCharCode(97 + ((i * 7) % 26))).join(
  '',
);

type Put = (key: string, value: string) => Promise<unknown>;

const puts = new Map<string, Put>();

function send(report: ClientReport): void {
  process.send?.(report);
}

async function putOf(target: Target): Promise<Put> {
  const existing = puts.get(target.name);
  if (existing !== undefined) return existing;
  let put: Put;
  switch (target.kind) {
    case 'replicated': {
      const terminating = target.batch ? httpBatchLink : httpLink;
      const client: TRPCClient<ReplicatedAppRouter> = createTRPCClient<ReplicatedAppRouter>({
        links: [
          raftSessionLink(),
          raftFailoverLink({
            nodes: target.nodes as Record<NodeId, string>,
            initial: target.initial,
            link: (url) => terminating({ url }),
          }),
        ],
      });
      put = (key, value) => client.put.mutate({ key, value });
      break;
    }
    case 'direct': {
      const client = createTRPCClient<DirectAppRouter>({
        links: [(target.batch ? httpBatchLink : httpLink)({ url: target.url })],
      });
      put = (key, value) => client.put.mutate({ key, value });
      break;
    }
    case 'etcd': {
      const { Etcd3 } = await import('etcd3');
      const client = new Etcd3({ hosts: [...target.hosts] });
      put = (key, value) => client.put(key).value(value).exec();
      break;
    }
  }
  puts.set(target.name, put);
  return put;
}

async function run(command: ClientCommand): Promise<void> {
  const put = await putOf(command.target);
  const latencies: number[] = [];
  let phase: 'warmup' | 'window' | 'drain' = 'warmup';
  let total = 0;
  let windowWrites = 0;
  let errors = 0;
  let firstError: string | undefined;
  let random = 0x2545f491;
  const nextKey = (): string => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return `k${(random >>> 0) % KEYS}`;
  };
  const worker = async (): Promise<void> => {
    while (phase !== 'drain') {
      const started = performance.now();
      try {
        await put(nextKey(), VALUE);
        total++;
        if (phase === 'window') {
          windowWrites++;
          latencies.push(performance.now() - started);
        }
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  const workers = Array.from({ length: command.inflight }, worker);
  await new Promise((resolve) => setTimeout(resolve, command.warmupMs));
  phase = 'window';
  send({ type: 'window-start' });
  const windowStart = performance.now();
  await new Promise((resolve) => setTimeout(resolve, command.windowMs));
  phase = 'drain';
  const seconds = (performance.now() - windowStart) / 1000;
  send({ type: 'window-end' });
  await Promise.all(workers);
  latencies.sort((a, b) => a - b);
  const at = (q: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  send({
    type: 'done',
    windowWrites,
    seconds,
    p50: at(0.5),
    p99: at(0.99),
    total,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
  });
}

process.on('message', (message: ClientCommand) => {
  run(message).catch((error: unknown) => {
    send({
      type: 'failed',
      message: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
  });
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
