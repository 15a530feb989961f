import { describe, it } from 'vitest';
import { probeDockerEngine } from './docker-engine.ts';
import { forcedProviderName } from './select-provider.ts';
import { expectCommittedDataSurvivesKill, expectIndependentServers } from './smoke-checks.ts';
import { TestcontainersProvider } from './testcontainers-provider.ts';

// Runs when testcontainers is the chosen provider (then a missing engine or image is a failure,
// not a skip) or whenever a Docker engine answers and has the image or can pull it.
const forced = forcedProviderName() === 'testcontainers';
const skipReason = forced ? undefined : await unavailableReason();
if (skipReason !== undefined) {
  console.info(`[postgres] skipping the testcontainers smoke test: ${skipReason}`);
}

async function unavailableReason(): Promise<string | undefined> {
  const docker = await probeDockerEngine();
  if (!docker.available) return docker.reason;
  return await new TestcontainersProvider().unavailableReason();
}

describe.skipIf(skipReason !== undefined)('testcontainers Postgres provider', () => {
  const provider = new TestcontainersProvider();

  it('starts independent servers', async () => {
    await expectIndependentServers(provider);
  });

  it('keeps committed data across kill and restart', async () => {
    await expectCommittedDataSurvivesKill(provider);
  });
});
