import type { AnyTRPCRouter } from '@trpc/server';
import type { CommandMap } from '@tsraft/pg-storage';
import { TestCluster, type TestClusterOptions } from './test-cluster.ts';

/**
 * A Vitest fixture (for `test.extend`) that gives each test that uses it a fresh
 * {@link TestCluster} and disposes it after the test, passed or failed:
 *
 * ```ts
 * const test = base.extend<{ cluster: TestCluster<typeof commands, Database, AppRouter> }>({
 *   cluster: testClusterFixture({ commands, tables: ['accounts'], migrate, app }),
 * });
 * ```
 *
 * It imports nothing from Vitest: any runner with Vitest's fixture shape can use it.
 */
export function testClusterFixture<C extends CommandMap, DB, TRouter extends AnyTRPCRouter>(
  options: TestClusterOptions<C, DB, TRouter>,
): (
  context: object,
  use: (cluster: TestCluster<C, DB, TRouter>) => Promise<void>,
) => Promise<void> {
  // biome-ignore lint/correctness/noEmptyPattern: Vitest reads a fixture's dependencies from this pattern.
  return async ({}, use) => {
    await using cluster = await TestCluster.start(options);
    await use(cluster);
  };
}
