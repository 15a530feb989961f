import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Logger } from './logger.ts';
import { bindLogger } from './logger.ts';
import { RaftNode } from './runtime/raft-node.ts';
import { RaftSupervisor } from './runtime/raft-supervisor.ts';
import { InProcessNetwork } from './testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from './testing/kv-state-machine.ts';
import { MemoryLogStore } from './testing/memory-log-store.ts';
import { MemorySnapshotStore } from './testing/memory-snapshot-store.ts';
import { waitFor } from './testing/test-cluster.test-helpers.ts';

/** A pino logger writing JSON lines into `lines` (raw text: JSON.parse would hide a repeated key). */
function capturingPino(lines: string[]): ReturnType<typeof pino> {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return pino({ level: 'debug' }, sink);
}

/** The keys of a JSON object's top level in the order written, repeats included. */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === '"') {
      let end = i + 1;
      while (line[end] !== '"') end += line[end] === '\\' ? 2 : 1;
      if (depth === 1 && line[end + 1] === ':') keys.push(JSON.parse(line.slice(i, end + 1)));
      i = end;
    } else if (char === '{' || char === '[') {
      depth++;
    } else if (char === '}' || char === ']') {
      depth--;
    }
  }
  return keys;
}

function repeatedKeys(line: string): string[] {
  const keys = topLevelKeys(line);
  return keys.filter((key, index) => keys.indexOf(key) !== index);
}

function startSingleNode(id: string, logger: Logger): Promise<RaftNode<KvCommand, KvResult>> {
  return RaftNode.start<KvCommand, KvResult>({
    id,
    config: { voters: [id] },
    logStore: new MemoryLogStore(),
    snapshotStore: new MemorySnapshotStore(),
    stateMachine: new KvStateMachine(),
    transport: new InProcessNetwork().transport(id),
    tickMs: 5,
    logger,
  });
}

describe('a pino logger with its own bindings', () => {
  it('bindLogger adds only the fields the logger does not bind already', () => {
    const lines: string[] = [];
    const app = capturingPino(lines).child({ node: 'api-1', service: 'bank' });
    expect(bindLogger(app, { node: 'n1' })).toBe(app);
    bindLogger(app, { node: 'n1', shard: 7 }).info({ term: 3 }, 'hello');
    expect(lines).toHaveLength(1);
    expect(repeatedKeys(lines[0] as string)).toEqual([]);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ node: 'api-1', shard: 7, term: 3 });
  });

  it('a RaftNode given a logger that binds `node` writes every line with each field once', async () => {
    const lines: string[] = [];
    const node = await startSingleNode('n1', capturingPino(lines).child({ node: 'n1', app: 'x' }));
    await waitFor(() => node.status().role === 'leader', { what: 'a leader' });
    await node.propose({ op: 'put', key: 'k', value: 'v' });
    await node.close();
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(repeatedKeys(line), line).toEqual([]);
    expect(lines.map((line) => JSON.parse(line).node)).toEqual(lines.map(() => 'n1'));
  });

  it('a RaftNode given a logger without bindings binds its own id once', async () => {
    const lines: string[] = [];
    const node = await startSingleNode('n7', capturingPino(lines));
    await waitFor(() => node.status().role === 'leader', { what: 'a leader' });
    await node.close();
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(repeatedKeys(line), line).toEqual([]);
    expect(lines.map((line) => JSON.parse(line).node)).toEqual(lines.map(() => 'n7'));
  });

  it("the RaftSupervisor's lines about a restart carry `node` once", async () => {
    const lines: string[] = [];
    const logger = capturingPino(lines).child({ node: 'n1' });
    let logStore: MemoryLogStore | undefined;
    const supervisor = await RaftSupervisor.start<KvCommand, KvResult>({
      logger,
      backoff: { initialMs: 5, maxMs: 5 },
      open: async () => {
        logStore = new MemoryLogStore(logStore === undefined ? {} : { durable: logStore.durable });
        return {
          id: 'n1',
          config: { voters: ['n1'] },
          logStore,
          snapshotStore: new MemorySnapshotStore(),
          stateMachine: new KvStateMachine(),
          transport: new InProcessNetwork().transport('n1'),
          tickMs: 5,
          logger,
        };
      },
    });
    try {
      await waitFor(
        () => {
          const status = supervisor.status();
          return status.state === 'running' && status.role === 'leader';
        },
        { what: 'a leader' },
      );
      logStore?.failNextPersist(new Error('disk gone'));
      await supervisor.propose({ op: 'put', key: 'k', value: 'v' }).catch(() => {});
      await waitFor(() => lines.some((line) => line.includes('recovered')), {
        what: 'the recovery line',
      });
    } finally {
      await supervisor.close();
    }
    const restart = lines.filter((line) => line.includes('supervised raft node'));
    expect(restart.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(repeatedKeys(line), line).toEqual([]);
    for (const line of restart) expect(JSON.parse(line).node).toBe('n1');
  });
});
