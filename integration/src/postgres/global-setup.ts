// Vitest's global setup resolves packages without the `@tsraft/source` condition, so the
// workspace package's source is imported by path (its dist/ may not be built).
import { selectProvider } from '../../../packages/testing/src/postgres/select-provider.ts';

/**
 * Vitest global setup of the integration project: says once, before any test, which Postgres
 * provider the tests will use and why (see `selectProvider()`), so a run's log explains itself.
 * A bad TSRAFT_PG_PROVIDER fails the run here, before any test starts.
 */
export default async function setup(): Promise<void> {
  await selectProvider();
  if (process.env.TSRAFT_PG_URLS) {
    const count = process.env.TSRAFT_PG_URLS.split(',').filter((url) => url.trim()).length;
    console.info(`[postgres] TSRAFT_PG_URLS lists ${count} external server(s)`);
  }
}
