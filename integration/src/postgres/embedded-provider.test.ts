import { EmbeddedProvider } from '@tsraft/testing';
import { describe, it } from 'vitest';
import {
  expectCommittedDataSurvivesKill,
  expectIndependentServers,
  expectPausedServerHangs,
} from './smoke-checks.ts';

describe('embedded Postgres provider', () => {
  const provider = new EmbeddedProvider();

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
