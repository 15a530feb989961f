/**
 * The code a run of the snapshot benchmark (`snapshot.ts`) measures: a tree of the repository
 * (this one, or a baseline commit's copy) and how its node program runs.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The node program, from a tree's root. */
export const NODE = 'packages/log-compaction/bench/snapshot-node.ts';
/** Where the node program goes as JavaScript: ignored by git, resolves the package's modules. */
const NODE_BUILT = 'packages/log-compaction/.data/bench/snapshot-node.mjs';

/**
 * How the node processes run a tree's code: `built`, the packages built to JavaScript (`dist`,
 * what an application that installs them runs), the node program stripped of its types; or
 * `source`, the TypeScript sources through Node's type stripping (`--conditions=@tsraft/source`,
 * as the repository's tests and demo run them).
 */
export const CODE_MODES = ['built', 'source'] as const;
export type CodeMode = (typeof CODE_MODES)[number];

/** The program a node process runs, and whether it loads the sources. */
export interface NodeProgram {
  readonly nodeScript: string;
  readonly source: boolean;
}

/**
 * The node program of the tree at `root` in `mode`. For `built`, builds the tree's packages
 * (`pnpm run build`: a fresh `dist` of each) and writes the node program without its types (it
 * imports packages only; a relative import would be refused).
 */
export async function nodeProgram(root: string, mode: CodeMode): Promise<NodeProgram> {
  const nodeScript = join(root, NODE);
  if (mode === 'source') return { nodeScript, source: true };
  console.info(`building the packages of ${root}`);
  await run('pnpm', ['run', 'build'], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
  const program = await readFile(nodeScript, 'utf8');
  if (/^import[^;]*from '\.{1,2}\//m.test(program)) {
    throw new Error(`${NODE} imports a relative module: it cannot run from ${NODE_BUILT}`);
  }
  const built = join(root, NODE_BUILT);
  await mkdir(join(built, '..'), { recursive: true });
  await writeFile(built, stripTypeScriptTypes(program));
  return { nodeScript: built, source: false };
}
