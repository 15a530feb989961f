import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** Whether a process with this id still runs. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The README's main command runs the demo: three node processes on PGlite talking tRPC. It must
 * complete the tour as a real process and leave no node process behind.
 */
it('the demo tour elects a leader, fails over, catches up and stops everything', async () => {
  const child = spawn(
    process.execPath,
    ['--conditions=@tsraft/source', 'examples/demo/src/main.ts'],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const timer = setTimeout(() => child.kill('SIGINT'), 75_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);

  // Each node's database is a copy of one initialized once (initdb), never initialized anew.
  expect(output).toContain('copied a freshly initialized database to');
  const first = /(n\d) won the election \(term (\d+)\)/.exec(output);
  expect(first, output).not.toBeNull();
  expect(output).toMatch(
    /transfer 30 alice -> bob \(forwarded by n\d\): result \{"from":70,"to":80\}/,
  );
  expect(output).toMatch(/A linearizable read on follower n\d .*: \{"alice":70,"bob":80\}/);
  const next = /(n\d) took over as leader of term (\d+)/.exec(output);
  expect(next, output).not.toBeNull();
  expect(next?.[1]).not.toBe(first?.[1]);
  expect(Number(next?.[2])).toBeGreaterThan(Number(first?.[2]));
  expect(output).toMatch(/Exactly-once: 6 transfers acknowledged, and bob went from 80 to 86/);
  expect(output).toMatch(
    new RegExp(
      `${first?.[1]} rejoined as a follower and caught up to index \\d+: .*\\{"alice":64,"bob":86\\}`,
    ),
  );
  expect(output).toContain('Tour complete.');
  expect(output).toContain('Stopped every node this demo started');
  expect(code, output).toBe(0);

  // Four node processes were started (three, then the killed one again); none may be left.
  const pids = [...output.matchAll(/is up: process (\d+)/g)].map((match) => Number(match[1]));
  expect(pids).toHaveLength(4);
  expect(pids.filter(running)).toEqual([]);
}, 90_000);
