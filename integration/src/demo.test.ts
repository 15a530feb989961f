import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** The README's main command runs the demo; it must complete the tour as a real process. */
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
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(output).toMatch(/won the election \(term \d+\)/);
  expect(output).toMatch(/took over as leader of term \d+/);
  expect(output).toMatch(/rejoined as a follower and caught up/);
  expect(output).toContain('Tour complete.');
  expect(output).toContain('Stopped every node this demo started.');
  expect(code, output).toBe(0);
}, 30_000);
