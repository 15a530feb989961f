import { StorageError } from '@tsraft/core';
import { sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';

/**
 * Refuses a database whose sessions start with `synchronous_commit = off`, unless the caller says
 * it accepts the risk. With it off, Postgres acknowledges a commit before its WAL is on disk: a
 * Postgres crash can then lose entries and votes this node already acknowledged, which breaks
 * Raft's safety (a node may vote twice in one term, or a committed entry may vanish from a
 * majority).
 *
 * Only the setting a new session gets is checked (database, role or server default); a session
 * that changes it later is not seen.
 */
export async function assertSynchronousCommit(db: AnyKysely, allowOff: boolean): Promise<void> {
  if (allowOff) return;
  const { rows } = await sql<{ value: string }>`
    select current_setting('synchronous_commit') as value
  `.execute(db);
  if (rows[0]?.value === 'off') {
    throw new StorageError(
      'Postgres runs with synchronous_commit = off: a crash of Postgres could lose Raft entries ' +
        'and votes already acknowledged, which breaks Raft safety. Turn it on for this database ' +
        '(ALTER DATABASE ... SET synchronous_commit = on), or pass ' +
        '`allowSynchronousCommitOff: true` if you accept that risk.',
    );
  }
}
