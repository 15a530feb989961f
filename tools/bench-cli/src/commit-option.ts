import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { UsageError } from './usage-error.ts';

/**
 * The abbreviated hash of the commit `ref` names in the git repository at `repo` (a branch, a tag,
 * a hash, `HEAD~2`), e.g. for a `--baseline REF`. Throws a {@link UsageError} naming `flag` when
 * `ref` names no commit there (or git cannot be run). Runs `git rev-parse`; changes nothing.
 */
export async function commitOption(flag: string, ref: string, repo: string): Promise<string> {
  // The `^{commit}` suffix also keeps a ref such as `--all` from reading as an option.
  const args = ['-C', repo, 'rev-parse', '--verify', '--quiet', '--short'];
  try {
    const { stdout } = await promisify(execFile)('git', [...args, `${ref}^{commit}`]);
    return stdout.trim();
  } catch (error) {
    throw new UsageError(`${flag}: "${ref}" is not a commit of this repository`, { cause: error });
  }
}
