import { selectProvider } from '@tsraft/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';

describe('selectProvider without TSRAFT_PG_PROVIDER', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('falls back to the embedded provider, saying why, when the image can be neither found nor pulled', async () => {
    vi.stubEnv('TSRAFT_PG_PROVIDER', '');
    vi.stubEnv('TSRAFT_PG_IMAGE', 'tsraft/no-such-image:0');
    const lines: string[] = [];
    const provider = await selectProvider({ log: (line) => lines.push(line) });
    expect(provider.name).toBe('embedded');
    expect(lines).toHaveLength(1);
    // Either no engine answered, or it did and the image is missing: the line names the cause.
    expect(lines[0]).toMatch(/no Docker engine answered|tsraft\/no-such-image:0/);
    expect(lines[0]).toMatch(/using the embedded provider/i);
  });

  it('refuses an unknown forced provider with the list of valid ones', async () => {
    vi.stubEnv('TSRAFT_PG_PROVIDER', 'sqlite');
    await expect(selectProvider({ log: () => {} })).rejects.toThrow(
      /testcontainers, embedded, external/,
    );
  });
});
