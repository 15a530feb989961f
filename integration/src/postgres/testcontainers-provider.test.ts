import { forcedProviderName, TestcontainersProvider } from '@tsraft/testing';
import { describe, it } from 'vitest';
import {
  expectCommittedDataSurvivesKill,
  expectIndependentServers,
  expectPausedServerHangs,
} from './smoke-checks.ts';

// Runs when testcontainers is the chosen provider (then a missing engine or image is a failure,
// not a skip) or whenever a Docker engine answers and has the image or can pull it.
const forced = forcedProviderName() === 'testcontainers';
const probe = forced ? undefined : await new TestcontainersProvider().availability();
const skipReason = probe?.available === false ? probe.reason : undefined;
if (skipReason !== undefined) {
  console.info(`[postgres] skipping the testcontainers smoke test: ${skipReason}`);
}

describe.skipIf(skipReason !== undefined)('testcontainers Postgres provider', () => {
  const provider = new TestcontainersProvider();

  it('starts independent servers', async () => {
    await expectIndependentServers(provider);
  });

  it('keeps committed data across kill and restart', async () => {
    await expectCommittedDataSurvivesKill(provider);
  });

  it('hangs rather than refuses while paused, and carries on once resumed', async () => {
    await expectPausedServerHangs(provider);
  });
});
