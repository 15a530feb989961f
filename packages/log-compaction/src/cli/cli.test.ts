import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, itemRows, pgliteNode, pgliteTable, tempFolder } from './cli.test-helpers.ts';

// The tool on a node's PGlite folder, in this process. The same commands as OS processes on real
// Postgres servers are in the integration tests (integration/src/snapshot-tool.test.ts).

let node: string;
let folder: Awaited<ReturnType<typeof tempFolder>>;

beforeAll(async () => {
  folder = await tempFolder();
  node = join(folder.path, 'node-1');
  await pgliteNode(node, { applied: 40, snapshot: true });
  return () => folder[Symbol.asyncDispose]();
}, 60_000);

describe('tsraft-snapshot on a node database', { timeout: 60_000 }, () => {
  it('lists the stored snapshots, as a table and as JSON', async () => {
    const text = await cli('list', '--db', node);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^ID\s+INDEX\s+TERM\s+SIZE\s+SHA-256\s+CREATED\s+STATE\n1\s+40\s+1\s/,
    );
    const json = await cli('list', '--db', node, '--json');
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { snapshots: { index: number; complete: boolean }[] };
    expect(parsed.snapshots).toMatchObject([{ index: 40, complete: true }]);
  });

  it('inspects the latest snapshot: metadata and the state header', async () => {
    const run = await cli('inspect', 'latest', '--db', node, '--json');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      snapshot: { id: 1, index: 40, term: 1, config: { voters: ['n1', 'n2', 'n3'] } },
      state: {
        position: { index: 40, term: 1 },
        tables: ['$client_session', '$client_result', 'public.items'],
      },
    });
  });

  it('exports a snapshot that verifies, with its rows counted per table', async () => {
    const file = join(folder.path, 'export.tsnap');
    const exported = await cli('export', 'latest', file, '--db', node, '--quiet');
    expect(exported.code, exported.stderr).toBe(0);
    const verified = await cli('verify', file, '--json');
    expect(verified.code, verified.stderr).toBe(0);
    const report = JSON.parse(verified.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      ok: true,
      header: { index: 40, term: 1, source: { kind: 'export', snapshotId: 1 } },
      state: {
        position: { index: 40, term: 1 },
        tables: [
          { table: '$client_session', rows: 1 },
          { table: '$client_result', rows: 40 },
          { table: 'public.items', rows: 40 },
        ],
      },
    });
    const listed = JSON.parse((await cli('list', '--db', node, '--json')).stdout) as {
      snapshots: { sha256: string }[];
    };
    expect(report.sha256).toBe(listed.snapshots[0]?.sha256);
    const inspected = await cli('inspect', file);
    expect(inspected.code).toBe(0);
    expect(inspected.stdout).toContain(
      'tables:        $client_session, $client_result, public.items',
    );
  });

  it('refuses a tampered or truncated file with exit code 4, saying what to do', async () => {
    const file = join(folder.path, 'good.tsnap');
    expect((await cli('export', '1', file, '--db', node, '--quiet')).code).toBe(0);
    const bytes = await readFile(file);
    const tampered = Buffer.from(bytes);
    tampered[bytes.byteLength >> 1] = (tampered[bytes.byteLength >> 1] ?? 0) ^ 1;
    await writeFile(join(folder.path, 'tampered.tsnap'), tampered);
    await writeFile(join(folder.path, 'truncated.tsnap'), bytes.subarray(0, bytes.byteLength - 40));
    for (const name of ['tampered.tsnap', 'truncated.tsnap']) {
      const run = await cli('verify', join(folder.path, name));
      expect(run.code, name).toBe(4);
      expect(run.stderr).toMatch(/the snapshot file is damaged: .*\n {2}what to do: /);
    }
    const json = await cli('verify', join(folder.path, 'truncated.tsnap'), '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { code: 4, message: expect.stringMatching(/truncated/) },
    });
  });

  it('leaves no file behind when an export fails', async () => {
    const run = await cli('export', '99', join(folder.path, 'none.tsnap'), '--db', node);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/holds no snapshot 99\n {2}what to do: list the snapshots/);
    expect(existsSync(join(folder.path, 'none.tsnap'))).toBe(false);
    expect((await readdir(folder.path)).filter((name) => name.endsWith('.partial'))).toEqual([]);
  });

  it('says what is wrong with a database that is not a node, or a missing file', async () => {
    const empty = join(folder.path, 'empty-node');
    await pgliteNode(empty, { applied: 0, snapshot: false });
    const other = await cli('list', '--db', empty, '--schema', 'elsewhere');
    expect(other.code).toBe(3);
    expect(other.stderr).toMatch(/no tsraft tables in schema "elsewhere"/);
    const notDb = await cli('list', '--db', folder.path);
    expect(notDb.code).toBe(2);
    expect(notDb.stderr).toMatch(/neither a postgres:\/\/ URL nor the folder of a PGlite database/);
    const none = await cli('verify', join(folder.path, 'missing.tsnap'));
    expect(none.code).toBe(3);
    const latestOfEmpty = await cli(
      'export',
      'latest',
      join(folder.path, 'x.tsnap'),
      '--db',
      empty,
    );
    expect(latestOfEmpty.code).toBe(3);
    expect(latestOfEmpty.stderr).toMatch(
      /holds no complete snapshot\n {2}what to do: take one first/,
    );
  });

  it('exits with 2 on wrong usage', async () => {
    expect((await cli('frobnicate')).code).toBe(2);
    expect((await cli('export', 'latest')).code).toBe(2);
    expect((await cli('list')).code).toBe(2);
    expect((await cli('inspect', 'latest')).code).toBe(2);
    expect(
      (await cli('create', '--admin', 'http://127.0.0.1:1/trpc', '--header', 'no-colon')).code,
    ).toBe(2);
    expect((await cli('--help')).code).toBe(0);
  });

  it('reports an unreachable node for create with exit code 6', async () => {
    const port = await pickLoopbackPort();
    const run = await cli('create', '--admin', `http://127.0.0.1:${port}/trpc`);
    expect(run.code).toBe(6);
    expect(run.stderr).toMatch(/cannot reach .*\n {2}what to do: check that the node runs/);
  });

  it('restores an exported snapshot into a fresh node: the same rows, the same snapshot', async () => {
    const file = join(folder.path, 'backup.tsnap');
    expect((await cli('export', 'latest', file, '--db', node, '--quiet')).code).toBe(0);
    const fresh = join(folder.path, 'fresh-node');
    await pgliteTable(fresh, 0);
    const restored = await cli('restore', file, '--db', fresh, '--tables', 'items', '--json');
    expect(restored.code, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ restored: { index: 40, term: 1 } });
    expect(await itemRows(fresh)).toBe(await itemRows(node));
    const listed = JSON.parse((await cli('list', '--db', fresh, '--json')).stdout) as {
      snapshots: { index: number; sha256: string }[];
    };
    const original = JSON.parse((await cli('list', '--db', node, '--json')).stdout) as {
      snapshots: { sha256: string }[];
    };
    expect(listed.snapshots).toMatchObject([{ index: 40, sha256: original.snapshots[0]?.sha256 }]);
  });

  it('refuses to restore over a node with Raft state, or from a damaged file, and changes nothing', async () => {
    const file = join(folder.path, 'backup-2.tsnap');
    expect((await cli('export', 'latest', file, '--db', node, '--quiet')).code).toBe(0);
    const target = join(folder.path, 'target-node');
    await pgliteTable(target, 0);
    await writeFile(join(folder.path, 'cut.tsnap'), (await readFile(file)).subarray(0, 200));
    const damaged = await cli(
      'restore',
      join(folder.path, 'cut.tsnap'),
      '--db',
      target,
      '--tables',
      'items',
    );
    expect(damaged.code).toBe(4);
    expect(await itemRows(target)).toBe('');
    expect((await cli('restore', file, '--db', target, '--tables', 'items', '--quiet')).code).toBe(
      0,
    );
    const before = await itemRows(target);
    const again = await cli('restore', file, '--db', target, '--tables', 'items');
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(
      /holds Raft state .* nothing was changed\n {2}what to do: .*--replace/,
    );
    expect(await itemRows(target)).toBe(before);
    const wrongTables = await cli(
      'restore',
      file,
      '--db',
      target,
      '--tables',
      'items,other',
      '--replace',
    );
    expect(wrongTables.code).not.toBe(0);
    expect(await itemRows(target)).toBe(before);
    expect(
      (await cli('restore', file, '--db', target, '--tables', 'items', '--replace', '--quiet'))
        .code,
    ).toBe(0);
  });

  it('seeds a new cluster from existing tables, and refuses a node that is not new', async () => {
    const legacy = join(folder.path, 'legacy-node');
    await pgliteTable(legacy, 250);
    const rows = await itemRows(legacy);
    const seedFile = join(folder.path, 'seed.tsnap');
    const seeded = await cli(
      'seed',
      '--db',
      legacy,
      '--tables',
      'items',
      '--voters',
      'n1,n2,n3',
      '--out',
      seedFile,
    );
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(seeded.stdout).toMatch(
      /tsraft-snapshot restore .*seed\.tsnap --db <its database> --tables items/,
    );
    const verified = JSON.parse((await cli('verify', seedFile, '--json')).stdout) as Record<
      string,
      unknown
    >;
    expect(verified).toMatchObject({
      header: {
        index: 1,
        term: 1,
        config: { voters: ['n1', 'n2', 'n3'] },
        source: { kind: 'seed' },
      },
      state: { tables: [{ rows: 0 }, { rows: 0 }, { table: 'public.items', rows: 250 }] },
    });
    expect(await itemRows(legacy)).toBe(rows);
    const other = join(folder.path, 'other-node');
    await pgliteTable(other, 3);
    expect(
      (await cli('restore', seedFile, '--db', other, '--tables', 'items', '--quiet')).code,
    ).toBe(0);
    expect(await itemRows(other)).toBe(rows);
    const twice = await cli(
      'seed',
      '--db',
      legacy,
      '--tables',
      'items',
      '--voters',
      'n1',
      '--out',
      seedFile,
    );
    expect(twice.code).toBe(5);
    expect(twice.stderr).toMatch(/not a new node/);
    const badVoters = await cli(
      'seed',
      '--db',
      other,
      '--tables',
      'items',
      '--voters',
      'n1,n1',
      '--out',
      seedFile,
    );
    expect(badVoters.code).toBe(2);
  });
});
