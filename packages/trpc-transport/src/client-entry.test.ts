import { webcrypto } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/** Bundles `source` for the browser as esbuild would for a web app; rejects on a Node import. */
async function bundleForBrowser(source: string) {
  return build({
    stdin: { contents: source, resolveDir: packageRoot, loader: 'ts' },
    bundle: true,
    platform: 'browser',
    format: 'iife',
    globalName: 'bundle',
    conditions: ['@tsraft/source'],
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
}

describe('@tsraft/trpc-transport/client in a browser bundle', () => {
  it('bundles for the browser platform without Node.js modules, and runs without Node globals', async () => {
    const result = await bundleForBrowser(`
      export { raftErrorOf, raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport/client';
    `);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((input) => input.startsWith('node:'))).toEqual([]);
    // Only the links and tRPC's observable: no zod, no peer transport, no core runtime.
    expect(inputs.filter((input) => /node_modules\/zod\//.test(input))).toEqual([]);
    expect(inputs.filter((input) => /peer-|raft-procedures/.test(input))).toEqual([]);

    // A browser's globals only: no process, no Buffer, no require.
    const browser = { crypto: webcrypto, setTimeout, clearTimeout } as Record<string, unknown>;
    runInNewContext(result.outputFiles[0]?.text ?? '', browser);
    const entry = browser.bundle as {
      raftSessionLink: () => unknown;
      raftFailoverLink: (options: object) => unknown;
      raftErrorOf: (error: unknown) => unknown;
    };
    expect(typeof entry.raftSessionLink()).toBe('function');
    expect(
      typeof entry.raftFailoverLink({ nodes: { n1: 'https://a.example' }, link: () => () => {} }),
    ).toBe('function');
    expect(
      entry.raftErrorOf({
        shape: {},
        data: { raft: { kind: 'not-leader', retryable: true, leaderHint: 'n2' } },
      }),
    ).toEqual({ kind: 'not-leader', retryable: true, leaderHint: 'n2' });
  });

  it('the package root is Node.js only: a browser bundle of it fails on Node.js modules', async () => {
    await expect(
      bundleForBrowser(`export { createTrpcTransport } from '@tsraft/trpc-transport';`),
    ).rejects.toThrow(/Could not resolve "node:/);
  });
});
