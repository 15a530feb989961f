import { type RawBuilder, sql } from 'kysely';

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
