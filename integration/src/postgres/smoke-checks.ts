import type { PostgresProvider } from '@tsraft/testing';
import pg from 'pg';
import { expect } from 'vitest';

/** A connected `pg` client that `await using` closes. */
type DisposableClient = pg.Client & AsyncDisposable;

async function connect(url: string): Promise<DisposableClient> {
  const client = new pg.Client({ connectionString: url });
  // A server killed under an open connection emits 'error'; the test sees the failed query instead.
  client.on('error', () => {});
  await client.connect();
  return Object.assign(client, { [Symbol.asyncDispose]: () => client.end() });
}

async function tableExists(url: string, table: string): Promise<boolean> {
  await using client = await connect(url);
  const { rows } = await client.query<{ found: string | null }>('SELECT to_regclass($1) AS found', [
    table,
  ]);
  return rows[0]?.found != null;
}

/** Two servers from one provider are independent: a table made in one does not exist in the other. */
export async function expectIndependentServers(provider: PostgresProvider): Promise<void> {
  await using first = await provider.start();
  await using second = await provider.start();
  expect(first.provider).toBe(provider.name);
  expect(first.url).not.toBe(second.url);
  const table = `smoke_${Date.now()}`;
  {
    await using client = await connect(first.url);
    await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, note text NOT NULL)`);
    await client.query(`INSERT INTO ${table} VALUES (1, 'only in the first server')`);
  }
  expect(await tableExists(first.url, table)).toBe(true);
  expect(await tableExists(second.url, table)).toBe(false);
}

/**
 * A committed row survives a crash (SIGKILL, crash recovery on restart) and a clean stop; the server
 * answers at its possibly new URL after each restart.
 */
export async function expectCommittedDataSurvivesKill(provider: PostgresProvider): Promise<void> {
  await using server = await provider.start();
  {
    await using client = await connect(server.url);
    await client.query('CREATE TABLE hard_state (term bigint NOT NULL, voted_for text)');
    await client.query(`INSERT INTO hard_state VALUES (7, 'node-2')`);
  }
  const readHardState = async () => {
    await using client = await connect(server.url);
    return (await client.query('SELECT term::int AS term, voted_for FROM hard_state')).rows;
  };

  await server.kill();
  await expect(connect(server.url)).rejects.toThrow();
  await server.restart();
  expect(await readHardState()).toEqual([{ term: 7, voted_for: 'node-2' }]);

  await server.stop();
  await server.restart();
  expect(await readHardState()).toEqual([{ term: 7, voted_for: 'node-2' }]);

  // restart() of a running server stops it first.
  await server.restart();
  expect(await readHardState()).toEqual([{ term: 7, voted_for: 'node-2' }]);
}

/**
 * A paused server hangs rather than refuses: a query on an open connection and a new connection
 * both get no answer (the client's own timeouts fire, not a refusal); after `resume()` the same
 * connection answers again, and committed data is intact.
 */
export async function expectPausedServerHangs(provider: PostgresProvider): Promise<void> {
  await using server = await provider.start();
  await using open = await connect(server.url);
  await open.query('CREATE TABLE paused (note text NOT NULL)');
  await open.query(`INSERT INTO paused VALUES ('before the pause')`);

  const hung = new pg.Client({ connectionString: server.url, query_timeout: 500 });
  hung.on('error', () => {});
  await hung.connect();

  await server.pause();
  await expect(hung.query('SELECT 1')).rejects.toThrow(/timeout/i);
  // Its connection is out of step now (the answer may still come); never reuse it.
  hung.end().catch(() => {});
  const connecting = new pg.Client({ connectionString: server.url, connectionTimeoutMillis: 500 });
  connecting.on('error', () => {});
  await expect(connecting.connect()).rejects.toThrow(/timeout/i);
  await connecting.end().catch(() => {});

  await server.resume();
  const { rows } = await open.query('SELECT note FROM paused');
  expect(rows).toEqual([{ note: 'before the pause' }]);
}
