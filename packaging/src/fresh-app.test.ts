import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const freshApp = fileURLToPath(new URL('../fresh-app', import.meta.url));

/** The published packages, by directory under `packages/`. */
const PACKAGES = [
  'core',
  'pg-storage',
  'trpc-transport',
  'log-compaction',
  'testing',
  'opentelemetry',
] as const;

/** The peer dependencies whose supported ranges this test proves, with the packages asking. */
const PEERS = {
  '@trpc/server': ['trpc-transport'],
  '@trpc/client': ['trpc-transport'],
  zod: ['trpc-transport', 'pg-storage'],
  kysely: ['pg-storage'],
  pg: ['pg-storage'],
  '@electric-sql/pglite': ['pg-storage'],
  '@opentelemetry/api': ['opentelemetry'],
} as const;
type Peer = keyof typeof PEERS;

/**
 * The oldest supported version of each peer: the lower bound of the packages' ranges, which
 * this test checks. TypeScript 5.7.2 is the oldest tRPC 11 supports. The OpenTelemetry SDK is the
 * app's own choice (no package of tsraft depends on it): 3.1.0 is the SDK of API 1.10.
 */
const OLDEST: Record<
  Peer | 'typescript' | '@types/pg' | '@types/node' | '@opentelemetry/sdk-metrics',
  string
> = {
  '@trpc/server': '11.22.1',
  '@trpc/client': '11.22.1',
  zod: '4.0.0',
  kysely: '0.29.0',
  pg: '8.11.0',
  '@types/pg': '8.11.0',
  '@electric-sql/pglite': '0.5.0',
  '@opentelemetry/api': '1.10.0',
  '@opentelemetry/sdk-metrics': '3.1.0',
  typescript: '5.7.2',
  '@types/node': '22.12.0',
};

/** The newest: the versions of the workspace's catalog (pnpm-workspace.yaml), which CI updates. */
async function newest(): Promise<typeof OLDEST> {
  const yaml = await readFile(join(root, 'pnpm-workspace.yaml'), 'utf8');
  const catalog = new Map(
    [...yaml.matchAll(/^ {2}"?([@\w./-]+)"?: ([\w.-]+)$/gm)].map((m) => [m[1], m[2]]),
  );
  const versions = Object.fromEntries(
    Object.keys(OLDEST).map((name) => {
      const version = catalog.get(name);
      if (version === undefined) throw new Error(`the catalog has no version of ${name}`);
      return [name, version];
    }),
  );
  return versions as typeof OLDEST;
}

/** pnpm, as the test command was started with (./dev puts it on PATH). */
function pnpm(args: string[], cwd: string) {
  return run('pnpm', args, { cwd, maxBuffer: 64 * 1024 * 1024 });
}

/** A folder of its own under the system's temporary folder, removed on dispose. */
async function tempDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, [Symbol.asyncDispose]: () => rm(path, { recursive: true, force: true }) };
}

async function packageJson(dir: string): Promise<{
  peerDependencies?: Record<string, string>;
  dependencies?: Record<string, string>;
}> {
  return JSON.parse(await readFile(join(root, 'packages', dir, 'package.json'), 'utf8'));
}

describe('the packed tarballs in a fresh app', () => {
  const tarballs = new Map<string, string>();
  let packed: AsyncDisposable & { path: string };

  beforeAll(async () => {
    packed = await tempDir('tsraft-tarballs-');
    // `pnpm pack` builds first (prepack) and rewrites workspace: and catalog: versions.
    for (const dir of PACKAGES) {
      const { stdout } = await pnpm(
        ['pack', '--pack-destination', packed.path],
        join(root, 'packages', dir),
      );
      const tarball = stdout.trim().split('\n').at(-1) ?? '';
      const { name } = JSON.parse(
        await readFile(join(root, 'packages', dir, 'package.json'), 'utf8'),
      );
      tarballs.set(name, tarball);
    }
    return () => packed[Symbol.asyncDispose]();
  });

  it('declare tRPC, zod, Kysely, pg, PGlite and the OpenTelemetry API as peers whose lower bounds are the oldest versions tested', async () => {
    for (const [peer, dirs] of Object.entries(PEERS)) {
      for (const dir of dirs) {
        const manifest = await packageJson(dir);
        expect(manifest.peerDependencies?.[peer], `${dir}: ${peer}`).toBe(
          `^${OLDEST[peer as Peer]}`,
        );
        expect(manifest.dependencies?.[peer], `${dir}: ${peer}`).toBeUndefined();
      }
    }
  });

  it('ship no tests and no test helpers', async () => {
    for (const tarball of tarballs.values()) {
      const { stdout } = await run('tar', ['-tzf', tarball]);
      expect(stdout).not.toMatch(/\.test(-helpers)?\.(ts|js|d\.ts)$/m);
      expect(stdout).toMatch(/^package\/LICENSE$/m);
      expect(stdout).toMatch(/^package\/README\.md$/m);
    }
  });

  for (const row of ['oldest', 'newest'] as const) {
    it(`typecheck and run on the ${row} supported tRPC, zod, Kysely, pg and OpenTelemetry API`, async () => {
      const versions = row === 'oldest' ? OLDEST : await newest();
      await using app = await tempDir(`tsraft-fresh-app-${row}-`);
      await cp(freshApp, app.path, { recursive: true });
      const local = Object.fromEntries(
        [...tarballs].map(([name, tarball]) => [name, `file:${tarball}`]),
      );
      await writeFile(
        join(app.path, 'package.json'),
        JSON.stringify({
          name: 'fresh-app',
          private: true,
          type: 'module',
          dependencies: { ...local, ...versions },
          // The packages depend on each other by version; those versions come from the tarballs.
          pnpm: { overrides: local },
        }),
      );
      // A peer range that refuses one of these versions fails the install.
      await pnpm(
        [
          'install',
          '--prefer-offline',
          '--config.strict-peer-dependencies=true',
          '--config.auto-install-peers=false',
          '--reporter=append-only',
        ],
        app.path,
      );
      const { stdout: tsc } = await run(join(app.path, 'node_modules/.bin/tsc'), ['--version']);
      expect(tsc).toContain(versions.typescript);
      await run(join(app.path, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], {
        cwd: app.path,
      }).catch((error: { stdout?: string }) => {
        throw new Error(`the fresh app does not typecheck:\n${error.stdout ?? String(error)}`);
      });

      const { stdout } = await run(process.execPath, ['app.ts'], { cwd: app.path });
      expect(JSON.parse(stdout.trim().split('\n').at(-1) ?? '')).toEqual({
        typesFlow: [true, true, true, true],
        moved: { from: 70, to: 30 },
        refused: 'insufficient_funds',
        balance: 30,
        metrics: { term: true, commitIndex: true, proposals: true },
      });
    });
  }
});
