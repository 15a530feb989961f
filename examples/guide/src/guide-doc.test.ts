import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../..', import.meta.url));

/** `<!-- guide-file: PATH -->`, a blank line, then a ```ts block: the file's text, verbatim. */
const BLOCK = /<!-- guide-file: (\S+) -->\n\n```ts\n([\s\S]*?)```/g;

it("GUIDE.md shows the guide's files exactly as they are typechecked and run", async () => {
  const guide = await readFile(`${repo}/GUIDE.md`, 'utf8');
  const shown = [...guide.matchAll(BLOCK)];
  expect(shown.map((match) => match[1])).toEqual([
    'examples/guide/src/commands.ts',
    'examples/guide/src/app-router.ts',
    'examples/guide/src/node.ts',
    'examples/guide/src/client.ts',
    'examples/guide/src/app.test.ts',
    'examples/guide/src/metrics.ts',
  ]);
  for (const [, path, code] of shown) {
    const file = await readFile(`${repo}/${path}`, 'utf8');
    expect(code, `GUIDE.md's block of ${path} differs from the file: copy the file into it`).toBe(
      file,
    );
  }
  // Every code file of the example is in the guide (tests of the example itself aside).
  const files = (await readdir(`${repo}/examples/guide/src`)).filter(
    (name) => !['node.test.ts', 'guide-doc.test.ts'].includes(name),
  );
  expect(files.map((name) => `examples/guide/src/${name}`).sort()).toEqual(
    shown.map((match) => match[1]).sort(),
  );
});
