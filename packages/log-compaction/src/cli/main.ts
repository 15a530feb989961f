#!/usr/bin/env node
/**
 * `tsraft-snapshot`: the snapshot tool of tsraft (see the package README). Ctrl-C (SIGINT) or
 * SIGTERM stops the running command, which changes nothing, and exits with 130.
 */
import { runCli } from './program.ts';

const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => controller.abort(new Error(`interrupted by ${signal}`)));
}
process.exitCode = await runCli(
  process.argv.slice(2),
  { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
  controller.signal,
);
