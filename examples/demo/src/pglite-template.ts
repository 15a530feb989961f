/**
 * A PGlite data directory initialized once and copied for every new node: initdb in WebAssembly
 * takes several seconds per database (three at once on a small machine, 20-35 s), while copying
 * a freshly initialized folder (about 40 MB) takes a fraction of a second.
 *
 * The template lives under `<cache>/pglite-<version>` so that a PGlite upgrade initializes a new
 * one; it is built in a temporary folder and renamed into place, so two demos started at once never
 * copy a half-written template.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';

/** What `copyFreshDatabase()` did: `initializedMs` is set when this call built the template. */
export interface FreshDatabase {
  readonly initializedMs: number | undefined;
  readonly copiedMs: number;
}

/**
 * Makes `target` a freshly initialized PGlite data directory (empty of tables), creating the
 * template under `cacheDir` first when it is missing. `target` must not exist yet.
 */
export async function copyFreshDatabase(cacheDir: string, target: string): Promise<FreshDatabase> {
  const template = join(cacheDir, `pglite-${await pgliteVersion()}`);
  let initializedMs: number | undefined;
  if (!(await exists(join(template, 'PG_VERSION')))) {
    const startedAt = performance.now();
    await initializeTemplate(template);
    initializedMs = performance.now() - startedAt;
  }
  const copiedAt = performance.now();
  await cp(template, target, { recursive: true, errorOnExist: true, force: false });
  return { initializedMs, copiedMs: performance.now() - copiedAt };
}

/** Builds the template concurrently-safe: initdb into a private folder, then one rename. */
async function initializeTemplate(template: string): Promise<void> {
  const scratch = `${template}.${randomBytes(4).toString('hex')}.tmp`;
  await mkdir(scratch, { recursive: true });
  try {
    const pglite = new PGlite(scratch);
    await pglite.waitReady;
    await pglite.close();
    await rename(scratch, template).catch(async (error: NodeJS.ErrnoException) => {
      // Another demo renamed its template into place first: theirs is as good as ours.
      if (!(await exists(join(template, 'PG_VERSION')))) throw error;
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The installed PGlite's version, from the `package.json` above its entry point. */
async function pgliteVersion(): Promise<string> {
  let dir = dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  for (;;) {
    const manifest = await readFile(join(dir, 'package.json'), 'utf8').then(
      (text) => JSON.parse(text) as { name?: string; version?: string },
      () => undefined,
    );
    if (manifest?.name === '@electric-sql/pglite' && manifest.version) return manifest.version;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the package.json of @electric-sql/pglite');
    dir = parent;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
