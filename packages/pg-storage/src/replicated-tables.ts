import { StorageError } from '@tsraft/core';
import { type RawBuilder, sql } from 'kysely';
import type { AnyKysely } from './any-kysely.ts';

/**
 * A replicated table of the application, as the state machine declares it: its name
 * (`schema.table`), its SQL identifier, and its name for a `regclass` cast.
 */
export interface ReplicatedTable {
  readonly name: string;
  readonly id: RawBuilder<unknown>;
  readonly regclass: string;
}

/** The replicated tables `tables` (`table` in `public`, or `schema.table`), in their order. */
export function replicatedTables(tables: readonly string[]): ReplicatedTable[] {
  return tables.map((table) => {
    const dot = table.indexOf('.');
    const [schema, name] =
      dot === -1 ? ['public', table] : [table.slice(0, dot), table.slice(dot + 1)];
    return {
      name: `${schema}.${name}`,
      id: sql.id(schema, name),
      regclass: `${quoteIdent(schema)}.${quoteIdent(name)}`,
    };
  });
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Checks that every replicated table exists.
 *
 * @throws StorageError naming the missing tables.
 */
export async function assertTablesExist(
  db: AnyKysely,
  tables: readonly ReplicatedTable[],
): Promise<void> {
  const names = tables.map((table) => table.name);
  const { rows } = await sql<{ name: string }>`
    select n as name from jsonb_array_elements_text(cast(${JSON.stringify(names)} as jsonb)) n
    where to_regclass(n) is null
  `.execute(db);
  if (rows.length > 0) {
    throw new StorageError(
      `the replicated tables ${rows.map((row) => row.name).join(', ')} do not exist; create them (your migrations) first`,
    );
  }
}
