import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { commitOption } from './commit-option.ts';
import { UsageError } from './usage-error.ts';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

describe('commitOption', () => {
  it('gives the abbreviated hash of the commit a ref names in the repository', async () => {
    const head = execFileSync('git', ['-C', repo, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
    const short = await commitOption('--baseline', 'HEAD', repo);
    expect(short).toMatch(/^[0-9a-f]{7,}$/);
    expect(head.startsWith(short)).toBe(true);
  });

  it('refuses a ref that names no commit, and one that looks like an option, naming the flag', async () => {
    for (const ref of ['no-such-branch-of-tsraft', '--all', 'HEAD^{tree}']) {
      const refused = commitOption('--baseline', ref, repo);
      await expect(refused).rejects.toBeInstanceOf(UsageError);
      await expect(refused).rejects.toThrow(
        `--baseline: "${ref}" is not a commit of this repository`,
      );
    }
  });
});
