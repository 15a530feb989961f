import { EmbeddedProvider, ExternalProvider } from '@tsraft/testing';
import { describe, expect, it } from 'vitest';
import { expectIndependentServers } from './smoke-checks.ts';

describe('external Postgres provider', () => {
  it('hands out independent servers from its URLs', async () => {
    if (process.env.TSRAFT_PG_URLS) {
      await expectIndependentServers(new ExternalProvider());
      return;
    }
    // No external servers configured: run two embedded ones and treat them as external.
    const embedded = new EmbeddedProvider();
    await using first = await embedded.start();
    await using second = await embedded.start();
    await expectIndependentServers(new ExternalProvider({ urls: [first.url, second.url] }));
  });

  it('fails clearly when its URLs run out, and cannot control servers', async () => {
    const provider = new ExternalProvider({ urls: ['postgres://user:secret@db.invalid:5432/app'] });
    await using server = await provider.start();
    expect(server.url).toBe('postgres://user:secret@db.invalid:5432/app');
    await expect(provider.start()).rejects.toThrow(/handed out all 1 URLs/);
    await expect(server.kill()).rejects.toThrow(/cannot kill a server/);
    await expect(server.stop()).rejects.toThrow(/cannot stop a server/);
    await expect(server.restart()).rejects.toThrow(/cannot restart a server/);
    expect(() => new ExternalProvider({ urls: ['mysql://x@y/z'] })).toThrow(
      /Not a Postgres connection URL/,
    );
  });
});
