import { createServer } from 'node:net';

/** Linux hands out ephemeral ports from 32768 up; every port below stays out of its way. */
const FIRST_PORT = 20_000;
const PORTS_PER_BLOCK = 1_000;
const BLOCKS = 12;

const handedOut = new Set<number>();
let cursor: number | undefined;

/**
 * Picks a TCP port on 127.0.0.1 for a server that a test (or the demo) is about to start.
 *
 * Binding port 0 and closing it again is not enough: the kernel takes that port from its
 * ephemeral range, where outgoing connections (to Postgres, to peers) take their local ports too,
 * and it may hand the same port out twice in a row, so two servers of one cluster can collide.
 * Instead each process walks its own block of ports below the ephemeral range (one block per
 * Vitest worker, by `VITEST_POOL_ID`, else by process id), never returns a port twice, and skips
 * ports that something is listening on now. An unrelated program can still bind the port before
 * the caller does; callers that must never fail retry on "address already in use".
 */
export async function pickLoopbackPort(): Promise<number> {
  const block = blockStart();
  cursor ??= Number(process.pid) % PORTS_PER_BLOCK;
  for (let tried = 0; tried < PORTS_PER_BLOCK; tried++) {
    const port = block + (cursor % PORTS_PER_BLOCK);
    cursor++;
    if (handedOut.has(port)) continue;
    if (await isFree(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(
    `No free port on 127.0.0.1 between ${block} and ${block + PORTS_PER_BLOCK - 1}: ` +
      'stop the servers of earlier runs, or run fewer in parallel.',
  );
}

function blockStart(): number {
  const pool = Number(process.env.VITEST_POOL_ID);
  const slot = Number.isInteger(pool) && pool > 0 ? pool : process.pid;
  return FIRST_PORT + (slot % BLOCKS) * PORTS_PER_BLOCK;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      probe.close(() => resolve(true));
    });
  });
}
