import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeId } from '@tsraft/core';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { type PostgresServer, selectProvider } from '@tsraft/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLUSTER_SECRET, PgNodeProcess } from './fixtures/pg-node-process.ts';

// tsraft-snapshot as an operator runs it: OS processes against nodes that are OS processes, each
// on its own real Postgres. Each scenario uses databases of its own on the three servers.

const CLI = fileURLToPath(
  new URL('../../packages/log-compaction/src/cli/main.ts', import.meta.url),
);
const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
let servers: PostgresServer[] = [];
let folder: string;

beforeAll(async () => {
  const provider = await selectProvider();
  servers = await Promise.all(IDS.map(() => provider.start()));
  folder = await mkdtemp(join(tmpdir(), 'tsraft-tool-'));
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server[Symbol.asyncDispose]()));
  await rm(folder, { recursive: true, force: true });
});

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `tsraft-snapshot ...args` as a process. */
function tool(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@tsraft/source', CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A database `name` on each server, with the `kv` table; their URLs by node id. */
async function databases(name: string): Promise<Record<NodeId, string>> {
  const urls: Record<NodeId, string> = {};
  for (const [i, id] of IDS.entries()) {
    const server = servers[i] as PostgresServer;
    await sqlOn(server.url, `create database ${name}`);
    const url = new URL(server.url);
    url.pathname = `/${name}`;
    urls[id] = url.toString();
    await sqlOn(urls[id], 'create table kv (key text primary key, value text not null)');
  }
  return urls;
}

async function sqlOn<T = Record<string, unknown>>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Starts a node process per database; they elect a leader. */
async function startCluster(urls: Record<NodeId, string>): Promise<PgNodeProcess[]> {
  const peers: Record<NodeId, string> = {};
  for (const id of IDS) peers[id] = `http://127.0.0.1:${await pickLoopbackPort()}`;
  const nodes = await Promise.all(
    IDS.map((id) => PgNodeProcess.spawn({ id, peers, databaseUrl: urls[id] as string })),
  );
  // Every node must know the leader before the test reads: a follower that knows none waits for
  // one only up to its leaderWaitMs (3 s by default) before it refuses a linearizable read ("no
  // leader could confirm the read index; retry shortly"), and an election on a loaded machine
  // may take longer than that.
  await expect
    .poll(
      async () => {
        const statuses = await Promise.all(nodes.map((node) => node.status()));
        const leader = statuses.find((s) => s.role === 'leader')?.id;
        return leader !== undefined && statuses.every((s) => s.leaderId === leader);
      },
      { timeout: 20_000 },
    )
    .toBe(true);
  return nodes;
}

async function stopCluster(nodes: readonly PgNodeProcess[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.kill('SIGTERM')));
}

function put(node: PgNodeProcess, key: string, value: string): Promise<unknown> {
  return node.client().mutation('execute', { name: 'put', input: { key, value } });
}

describe('tsraft-snapshot against node processes on real Postgres', () => {
  it('backs up a running cluster and restores it as a new cluster that serves the same data; every error says what to do', async () => {
    const urls = await databases('tool_backup');
    const nodes = await startCluster(urls);
    try {
      for (let i = 0; i < 50; i++) await put(nodes[0] as PgNodeProcess, `key-${i}`, `value ${i}`);
      const admin = `${nodes[0]?.url}/trpc`;
      const created = await tool(
        'create',
        '--admin',
        admin,
        '--header',
        `x-admin: ${CLUSTER_SECRET}`,
        '--json',
      );
      expect(created.code, created.stderr).toBe(0);
      expect(JSON.parse(created.stdout)).toMatchObject({ snapshot: { config: { voters: IDS } } });
      const denied = await tool('create', '--admin', admin, '--header', 'x-admin: wrong');
      expect(denied.code).toBe(5);
      expect(denied.stderr).toMatch(
        /refused the call.*\n {2}what to do: pass the admin credential/,
      );
      const wrongPath = await tool(
        'create',
        '--admin',
        admin,
        '-H',
        `x-admin: ${CLUSTER_SECRET}`,
        '--admin-path',
        'nope',
      );
      expect(wrongPath.code).toBe(3);
      const unreachable = await tool(
        'create',
        '--admin',
        `http://127.0.0.1:${await pickLoopbackPort()}/trpc`,
      );
      expect(unreachable.code).toBe(6);

      const db = urls.n1 as string;
      const listed = await tool('list', '--db', db, '--json');
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout).snapshots).toHaveLength(1);
      const inspected = await tool('inspect', 'latest', '--db', db);
      expect(inspected.code).toBe(0);
      expect(inspected.stdout).toContain(
        'tables:        $client_session, $client_result, public.kv',
      );
      const backup = join(folder, 'backup.tsnap');
      const exported = await tool('export', 'latest', backup, '--db', db);
      expect(exported.code, exported.stderr).toBe(0);
      const verified = await tool('verify', backup, '--json');
      expect(verified.code, verified.stderr).toBe(0);
      expect(JSON.parse(verified.stdout).state.tables).toContainEqual({
        table: 'public.kv',
        rows: 50,
      });
      // The node's pool closes connections idle for 10 s, which a loaded machine can spend
      // between two commands: a client of the test's own stands for the running node's.
      const nodeClient = new pg.Client({ connectionString: db, application_name: 'kv-node n1' });
      await nodeClient.connect();
      try {
        const inUse = await tool('restore', backup, '--db', db, '--tables', 'kv');
        expect(inUse.code).toBe(5);
        expect(inUse.stderr).toMatch(
          /other client connection\(s\).*kv-node n1.*the node may still be running\n {2}what to do: stop the node/,
        );
      } finally {
        await nodeClient.end();
      }

      const bytes = await readFile(backup);
      const tampered = Buffer.from(bytes);
      tampered[bytes.byteLength - 200] = (tampered[bytes.byteLength - 200] ?? 0) ^ 1;
      await writeFile(join(folder, 'tampered.tsnap'), tampered);
      await writeFile(join(folder, 'truncated.tsnap'), bytes.subarray(0, bytes.byteLength >> 1));
      const fresh = await databases('tool_fresh');
      for (const file of ['tampered.tsnap', 'truncated.tsnap']) {
        expect((await tool('verify', join(folder, file))).code, file).toBe(4);
        const refused = await tool(
          'restore',
          join(folder, file),
          '--db',
          fresh.n1 as string,
          '--tables',
          'kv',
        );
        expect(refused.code, file).toBe(4);
        expect(refused.stderr).toMatch(/damaged.*\n {2}what to do: nothing was changed/);
      }
      // Nothing was changed: the fresh database has no Raft schema.
      expect((await tool('list', '--db', fresh.n1 as string)).code).toBe(3);
      expect(await sqlOn(fresh.n1 as string, 'select * from kv')).toEqual([]);

      // Disaster recovery: the same file into every node of a new cluster.
      await stopCluster(nodes);
      for (const id of IDS) {
        const restored = await tool(
          'restore',
          backup,
          '--db',
          fresh[id] as string,
          '--tables',
          'kv',
          '--quiet',
        );
        expect(restored.code, restored.stderr).toBe(0);
      }
      const again = await tool('restore', backup, '--db', fresh.n1 as string, '--tables', 'kv');
      expect(again.code).toBe(5);
      expect(again.stderr).toMatch(/--replace/);
      const restoredCluster = await startCluster(fresh);
      try {
        for (const node of restoredCluster) {
          for (const i of [0, 25, 49]) {
            expect(await node.client().query('get', { key: `key-${i}` })).toBe(`value ${i}`);
          }
        }
        await put(restoredCluster[1] as PgNodeProcess, 'new', 'write');
        expect(await restoredCluster[2]?.client().query('get', { key: 'new' })).toBe('write');
      } finally {
        await stopCluster(restoredCluster);
      }
    } finally {
      await stopCluster(nodes);
    }
    expect((await tool('frobnicate')).code).toBe(2);
    expect((await tool('list', '--db', urls.n1 as string, '--schema', 'nothing_here')).code).toBe(
      3,
    );
  });

  it('seeds a new cluster from the tables of one node; a node whose tables hold rows no log explains refuses to start', async () => {
    const urls = await databases('tool_seed');
    await sqlOn(
      urls.n1 as string,
      `insert into kv select 'legacy-' || g, 'from before tsraft ' || g from generate_series(1, 500) g`,
    );
    await sqlOn(urls.n2 as string, `insert into kv values ('legacy-1', 'drifted')`);
    const peers = { n1: `http://127.0.0.1:${await pickLoopbackPort()}` };
    const refusal = await PgNodeProcess.spawn({
      id: 'n1',
      peers,
      databaseUrl: urls.n1 as string,
    }).catch((error: unknown) => error);
    expect(String(refusal)).toMatch(
      /hold rows, but this node has applied nothing.*tsraft-snapshot seed --db/,
    );

    const seedFile = join(folder, 'seed.tsnap');
    const seeded = await tool(
      'seed',
      '--db',
      urls.n1 as string,
      '--tables',
      'kv',
      '--voters',
      IDS.join(','),
      '--out',
      seedFile,
    );
    expect(seeded.code, seeded.stderr).toBe(0);
    for (const id of ['n2', 'n3'] as const) {
      const restored = await tool(
        'restore',
        seedFile,
        '--db',
        urls[id] as string,
        '--tables',
        'kv',
        '--quiet',
      );
      expect(restored.code, restored.stderr).toBe(0);
    }
    const twice = await tool(
      'seed',
      '--db',
      urls.n1 as string,
      '--tables',
      'kv',
      '--voters',
      'n1',
      '--out',
      seedFile,
    );
    expect(twice.code).toBe(5);
    const nodes = await startCluster(urls);
    try {
      for (const node of nodes) {
        expect(await node.client().query('get', { key: 'legacy-1' })).toBe('from before tsraft 1');
        expect(await node.client().query('get', { key: 'legacy-500' })).toBe(
          'from before tsraft 500',
        );
      }
      await put(nodes[2] as PgNodeProcess, 'legacy-1', 'changed through Raft');
      for (const node of nodes) {
        expect(await node.client().query('get', { key: 'legacy-1' })).toBe('changed through Raft');
      }
    } finally {
      await stopCluster(nodes);
    }
  });
});
