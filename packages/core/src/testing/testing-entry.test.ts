import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const packageRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Imports `specifier` in a plain Node process (no test runner) whose module hooks refuse to
 * resolve `vitest`; resolves with what the process printed.
 */
async function importWithoutVitest(specifier: string): Promise<string> {
  const script = `
    import { registerHooks } from 'node:module';
    registerHooks({
      resolve(name, context, next) {
        if (name === 'vitest' || name.startsWith('vitest/')) {
          throw new Error('vitest was imported while loading ${specifier}');
        }
        return next(name, context);
      },
    });
    const entry = await import('${specifier}');
    console.log(Object.keys(entry).sort().join(','));
  `;
  const { stdout } = await run(
    process.execPath,
    ['--conditions=@tsraft/source', '--input-type=module', '--eval', script],
    { cwd: packageRoot },
  );
  return stdout.trim();
}

describe('@tsraft/core/testing', () => {
  it('loads in a process without a test runner: it never imports vitest', async () => {
    const exported = (await importWithoutVitest('@tsraft/core/testing')).split(',');
    expect(exported).toEqual(
      expect.arrayContaining(['MemoryLogStore', 'runSimulation', 'pickLoopbackPort']),
    );
    expect(exported).not.toContain('describeLogStoreConformance');
  });

  it('the conformance suites are their own entry point, which does import vitest', async () => {
    await expect(importWithoutVitest('@tsraft/core/testing/conformance')).rejects.toThrow(
      /vitest was imported/,
    );
  });
});
