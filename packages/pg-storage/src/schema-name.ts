/** The schema the stores use when none is given. */
export const DEFAULT_SCHEMA = 'raft';

/**
 * Checks that `schema` is a plain, unquoted Postgres identifier: lower-case letters, digits and
 * underscores, not starting with a digit, at most 63 bytes (Postgres' NAMEDATALEN - 1). Keeping to
 * this form means the name looks the same in `psql`, quoted or not, and can never inject SQL.
 *
 * @throws TypeError saying what is wrong with the name.
 */
export function validateSchemaName(schema: string): string {
  if (typeof schema !== 'string' || !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new TypeError(
      `schema name ${JSON.stringify(schema)} is not a plain Postgres identifier: use 1 to 63 ` +
        'lower-case letters, digits and underscores, not starting with a digit',
    );
  }
  if (schema.startsWith('pg_')) {
    throw new TypeError(
      `schema name "${schema}" is reserved: names starting with pg_ are Postgres' own`,
    );
  }
  return schema;
}
