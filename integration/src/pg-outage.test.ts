import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { selectProvider } from '@tsraft/testing';
import { describe, expect, it } from 'vitest';

// A node's process must outlive its Postgres: a `pg` client checked out of the pool when the
// server dies emits 'error', which pg-pool does not listen to on checked-out clients; unhandled,
// it ends the process. Each place that holds a connection is made to wait on a lock inside
// Postgres, then the server is killed (SIGKILL, a crash) under it.

const PROBE = fileURLToPath(new URL('./fixtures/pg-outage-probe.ts', import.meta.url));
const PLACES = ['log-store', 'snapshot-store', 'apply', 'export', 'restore'] as const;

interface ProbeRun {
  code: number | null;
  lines: Record<string, unknown>[];
  output: string;
}

/** Runs the probe at `place`, killing the server once the probe's call waits on it. */
async function probe(place: (typeof PLACES)[number]): Promise<ProbeRun> {
  const provider = await selectProvider();
  await using server = await provider.start();
  const child = spawn(process.execPath, ['--conditions=@tsraft/source', PROBE], {
    env: { ...process.env, TSRAFT_DATABASE_URL: server.url, TSRAFT_PLACE: place },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: ProbeRun = { code: null, lines: [], output: '' };
  child.stderr.on('data', (chunk: Buffer) => {
    run.output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const waiting = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      run.output += `${line}\n`;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      run.lines.push(parsed);
      if (parsed.waiting === true) resolve();
    });
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    await Promise.race([waiting, exited]);
    await server.kill();
    run.code = await exited;
  } finally {
    clearTimeout(timer);
  }
  return run;
}

describe("a node's process when its Postgres dies under a call", () => {
  it.each(PLACES)(
    '%s: the call fails with a StorageError and the process lives on',
    async (place) => {
      const run = await probe(place);
      expect(run.output).not.toMatch(/Unhandled 'error' event/);
      expect(run.code, run.output).toBe(0);
      expect(run.lines).toContainEqual(expect.objectContaining({ rejected: 'StorageError' }));
    },
    120_000,
  );
});
