import { PGlite } from '@electric-sql/pglite';
import { RaftNode, SnapshotExportRefusedError } from '@tsraft/core';
import { InProcessNetwork } from '@tsraft/core/testing';
import { Kysely, PGliteDialect, sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { PostgresLogStore } from './postgres-log-store.ts';
import { PostgresSnapshotStore } from './postgres-snapshot-store.ts';
import { createPostgresStateMachine } from './postgres-state-machine.ts';

describe('a snapshot export the state machine refuses', () => {
  it('fails takeSnapshot with SnapshotExportRefusedError naming the table; the node goes on and snapshots once the value is fixed', async () => {
    // biome-ignore lint/suspicious/noExplicitAny: a table of the test's own making
    const db = new Kysely<any>({ dialect: new PGliteDialect({ pglite: new PGlite() }) });
    await sql`create table docs (k text primary key, j json)`.execute(db);
    await sql`insert into docs values ('a', '"x\\u0000"')`.execute(db);
    const snapshotStore = await PostgresSnapshotStore.open({ db });
    const node = await RaftNode.start({
      id: 'n1',
      config: { voters: ['n1'] },
      logStore: await PostgresLogStore.open({ db, allowSynchronousCommitOff: true }),
      snapshotStore,
      stateMachine: await createPostgresStateMachine({
        db,
        commands: {},
        tables: ['docs'],
        existingRows: 'accept',
      }),
      transport: new InProcessNetwork().transport('n1'),
      tickMs: 10,
    });
    try {
      for (let waited = 0; node.status().appliedIndex < 1; waited++) {
        if (waited > 1000) throw new Error('the node did not apply its first entry');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const error = await node.takeSnapshot().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SnapshotExportRefusedError);
      expect((error as Error).message).toContain(
        'a json value of public.docs holds the escape \\u0000',
      );
      expect(node.status().closed).toBe(false);
      expect(await snapshotStore.latest()).toBeUndefined();
      expect(node.status().firstIndex).toBe(1);

      await sql`update docs set j = '"x"'`.execute(db);
      const snapshot = await node.takeSnapshot();
      expect(snapshot?.index).toBe(node.status().appliedIndex);
      expect((await snapshotStore.latest())?.index).toBe(snapshot?.index);
    } finally {
      await node.close();
      await db.destroy();
    }
  });
});
