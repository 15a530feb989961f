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
 * Checks that every replicated table exists and that a snapshot can restore it: no generated
 * columns (a restore inserts every column's value, which Postgres refuses for a generated column,
 * so no follower could install a snapshot of the table).
 *
 * @throws StorageError naming the missing tables, or the generated columns and what to do.
 */
export async function assertReplicable(
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
  const generated = await generatedColumns(db, tables);
  if (generated.length > 0) {
    throw new StorageError(
      `the replicated tables cannot have generated columns: ${generated.join('; ')}. A snapshot restore writes every column's value, which Postgres refuses for a generated column, so no follower could install a snapshot. Make them plain columns that the commands' handlers set, or compute them when reading (in a view or a query)`,
    );
  }
}

/** The generated columns of `tables`, as `table: column, column` (information_schema, any version). */
async function generatedColumns(
  db: AnyKysely,
  tables: readonly ReplicatedTable[],
): Promise<string[]> {
  const regclasses = JSON.stringify(tables.map((table) => table.regclass));
  const { rows } = await sql<{ ord: unknown; columns: string }>`
    select x.ord, string_agg(col.column_name::text, ', ' order by col.ordinal_position) as columns
    from jsonb_array_elements_text(cast(${regclasses} as jsonb)) with ordinality as x(name, ord)
    join pg_class c on c.oid = x.name::regclass
    join pg_namespace n on n.oid = c.relnamespace
    join information_schema.columns col
      on col.table_schema = n.nspname and col.table_name = c.relname
    where col.is_generated = 'ALWAYS'
    group by x.ord
    order by x.ord
  `.execute(db);
  return rows.map((row) => `${tables[Number(row.ord) - 1]?.name}: ${row.columns}`);
}
