import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Options of {@link baselineTree}. */
export interface BaselineTreeOptions {
  /** The git repository `commit` is of. */
  readonly repo: string;
  /** The commit, as a hash (e.g. from `commitOption`). */
  readonly commit: string;
  /** The folder the tree goes in, as `baseline-<commit>`; created when missing. */
  readonly dir: string;
  /**
   * A file of the tree, relative to its root (the program the bench runs from it): when the
   * folder already holds it, the files are not extracted again.
   */
  readonly marker: string;
}

/**
 * The files of a baseline commit, to run its programs beside this tree's in one benchmark run:
 * `git archive` of `commit` extracted into `<dir>/baseline-<commit>` (unless it holds `marker`
 * already), then its dependencies installed from pnpm's store (`pnpm install --frozen-lockfile
 * --prefer-offline`, quick when they are). Says so on stdout. Resolves to the tree's root; rejects
 * when git, tar or pnpm fails. Writes nothing outside that folder but the archive, beside it,
 * removed once extracted.
 */
export async function baselineTree(options: BaselineTreeOptions): Promise<string> {
  const { repo, commit, dir, marker } = options;
  const root = join(dir, `baseline-${commit}`);
  if (!existsSync(join(root, marker))) {
    await mkdir(root, { recursive: true });
    const archive = `${root}.tar`;
    await run('git', ['-C', repo, 'archive', `--output=${archive}`, commit]);
    await run('tar', ['-x', '-f', archive, '-C', root]);
    await rm(archive);
  }
  console.info(`baseline: ${commit} in ${root}; installing its dependencies`);
  await run('pnpm', ['install', '--frozen-lockfile', '--prefer-offline'], {
    cwd: root,
    maxBuffer: 16 * 1024 * 1024,
  });
  return root;
}
