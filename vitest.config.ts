import { fileURLToPath } from 'node:url';
import { defineConfig, type ViteUserConfig } from 'vitest/config';

/** Resolve workspace siblings to their TypeScript sources, not their built `dist/`. */
const sourceConditions = ['@tsraft/source'];

/** The randomized simulation: CPU-bound, so the test script runs it after the others. */
const SIMULATION = 'src/testing/sim/simulator.test.ts';

const unitProject = (name: string) => ({
  extends: true as const,
  test: {
    name,
    root: `packages/${name}`,
    include: ['src/**/*.test.ts'],
    exclude: [SIMULATION],
  },
});

const config: ViteUserConfig = defineConfig({
  resolve: { conditions: sourceConditions },
  ssr: { resolve: { conditions: sourceConditions } },
  test: {
    projects: [
      unitProject('core'),
      unitProject('trpc-transport'),
      // PGlite (Postgres in WebAssembly) is slow on a loaded 2-core machine: a test may take a
      // few times its usual seconds there, and a cold start (in a `beforeAll`) over ten.
      {
        ...unitProject('pg-storage'),
        test: { ...unitProject('pg-storage').test, testTimeout: 20_000, hookTimeout: 60_000 },
      },
      unitProject('log-compaction'),
      unitProject('opentelemetry'),
      {
        // The benchmark programs' command-line helpers (a private workspace package).
        extends: true,
        test: { name: 'bench-cli', root: 'tools/bench-cli', include: ['src/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'simulation', root: 'packages/core', include: [SIMULATION] },
      },
      {
        extends: true,
        test: {
          // Packs the packages, installs them into fresh apps from the npm registry: minutes.
          name: 'packaging',
          root: 'packaging',
          include: ['src/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
      {
        extends: true,
        test: {
          // GUIDE.md's code: its nodes and its tests on real Postgres servers, and the guide's
          // code blocks checked against these files.
          name: 'guide',
          root: 'examples/guide',
          include: ['src/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          root: 'integration',
          include: ['src/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          globalSetup: [
            fileURLToPath(new URL('./integration/src/postgres/global-setup.ts', import.meta.url)),
          ],
        },
      },
    ],
    passWithNoTests: false,
  },
});

export default config;
