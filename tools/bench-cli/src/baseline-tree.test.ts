import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { baselineTree } from './baseline-tree.ts';

describe('baselineTree', () => {
  let repo: string;
  let dir: string;
  let first: string;
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
      encoding: 'utf8',
    }).trim();

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'bench-cli-repo-'));
    dir = await mkdtemp(join(tmpdir(), 'bench-cli-trees-'));
    git('init', '-q');
    await writeFile(join(repo, 'package.json'), '{ "name": "baseline", "private": true }\n');
    await writeFile(join(repo, 'program.ts'), 'first\n');
    git('add', '.');
    git('commit', '-q', '-m', 'first');
    first = git('rev-parse', '--short', 'HEAD');
    await writeFile(join(repo, 'program.ts'), 'second\n');
    git('commit', '-q', '-am', 'second');
    vi.spyOn(console, 'info').mockImplementation(() => {});
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await rm(repo, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it("holds the commit's files, not the working tree's, with its dependencies installed", async () => {
    const root = await baselineTree({ repo, commit: first, dir, marker: 'program.ts' });
    expect(root).toBe(join(dir, `baseline-${first}`));
    expect(await readFile(join(root, 'program.ts'), 'utf8')).toBe('first\n');
    expect(existsSync(join(root, 'pnpm-lock.yaml'))).toBe(true);
    expect(existsSync(`${root}.tar`)).toBe(false);
  });

  it('extracts the files once: a tree that holds the marker is kept as it is', async () => {
    const root = join(dir, `baseline-${first}`);
    await writeFile(join(root, 'program.ts'), 'edited\n');
    await baselineTree({ repo, commit: first, dir, marker: 'program.ts' });
    expect(await readFile(join(root, 'program.ts'), 'utf8')).toBe('edited\n');
  });

  it('rejects a commit the repository does not have', async () => {
    await expect(
      baselineTree({ repo, commit: 'deadbeef', dir, marker: 'program.ts' }),
    ).rejects.toThrow();
  });
});
