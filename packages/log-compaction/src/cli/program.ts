import { createRequire } from 'node:module';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { EXIT, type ExitCode, toCliError } from './cli-error.ts';
import type { CommandContext, DatabaseOptions } from './command-context.ts';
import { createCommand } from './commands/create.ts';
import { exportCommand } from './commands/export.ts';
import { inspectCommand } from './commands/inspect.ts';
import { listCommand } from './commands/list.ts';
import { type RestoreOptions, restoreCommand } from './commands/restore.ts';
import { type SeedOptions, seedCommand } from './commands/seed.ts';
import { verifyCommand } from './commands/verify.ts';
import { type CliStreams, type OutputOptions, Reporter } from './reporter.ts';

/** Both `src/cli` and `dist/cli` sit two folders below the package's root. */
const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/**
 * Runs `tsraft-snapshot` with `args` (without the program name) and resolves with its exit code;
 * never throws. `signal` aborts the running command (Ctrl-C).
 */
export async function runCli(
  args: readonly string[],
  streams: CliStreams,
  signal: AbortSignal,
): Promise<ExitCode> {
  let reporter = new Reporter(streams, {});
  const context = (options: OutputOptions): CommandContext => {
    reporter = new Reporter(streams, options);
    return { reporter, signal, streams };
  };
  const program = new Command('tsraft-snapshot')
    .description(
      'Back up, inspect, restore and seed the snapshots of tsraft nodes (see the README of @tsraft/log-compaction).',
    )
    .version(version)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => streams.stdout.write(text),
      writeErr: (text) => streams.stderr.write(text),
    })
    .showHelpAfterError('(run tsraft-snapshot help <command> for its options)');

  withOutput(
    withDatabase(
      program.command('list').description("the snapshots a node's database holds, newest first"),
    ),
  ).action((options: DatabaseOptions & OutputOptions) => listCommand(options, context(options)));

  withOutput(
    program
      .command('inspect')
      .description("a snapshot's metadata and the tables of its state (reads only its start)")
      .argument('<snapshot>', 'a snapshot id or "latest" (with --db), or a snapshot file')
      .option('--db <url>', "the node's database: postgres://… or a PGlite folder")
      .addOption(schemaOption()),
  ).action((target: string, options: { db?: string; schema: string } & OutputOptions) =>
    inspectCommand(target, options, context(options)),
  );

  withOutput(
    program
      .command('create')
      .description('make a running node take a snapshot now, through its admin router')
      .requiredOption('--admin <url>', "the node's tRPC URL, e.g. http://node-1:3000/trpc")
      .option('--admin-path <key>', 'the key the app mounted raft.adminRouter() under', 'raftAdmin')
      .option(
        '-H, --header <header>',
        'a header for the call, "name: value" (repeatable)',
        collect,
        [],
      ),
  ).action((options: { admin: string; adminPath: string; header: string[] } & OutputOptions) =>
    createCommand(options, context(options)),
  );

  withOutput(
    withDatabase(
      program
        .command('export')
        .description('write a stored snapshot to a snapshot file (written whole, or not at all)')
        .argument('<snapshot>', 'a snapshot id as list shows it, or "latest"')
        .argument('<file>', 'the file to write, or - for standard output'),
    ),
  ).action((target: string, file: string, options: DatabaseOptions & OutputOptions) =>
    exportCommand(target, file, options, context(options)),
  );

  withOutput(
    program
      .command('verify')
      .description('check every checksum of a snapshot file, and the structure of the state inside')
      .argument('<file>', 'the snapshot file, or - for standard input'),
  ).action((file: string, options: OutputOptions) => verifyCommand(file, context(options)));

  withOutput(
    withDatabase(
      program
        .command('restore')
        .description(
          'make a stopped node start from a snapshot file (checked whole first; all or nothing)',
        )
        .argument('<file>', 'the snapshot file')
        .requiredOption('--tables <list>', 'the replicated tables, comma-separated, in order', list)
        .option('--replace', 'replace the state of a node that holds some (see the runbook)', false)
        .option('--force', 'skip the check that no other client uses the database', false),
    ),
  ).action((file: string, options: RestoreOptions & OutputOptions) =>
    restoreCommand(file, options, context(options)),
  );

  withOutput(
    withDatabase(
      program
        .command('seed')
        .description(
          "start a new cluster from a node's existing tables: write its first snapshot, install it here",
        )
        .requiredOption('--tables <list>', 'the replicated tables, comma-separated, in order', list)
        .requiredOption('--voters <list>', 'the node ids of the new cluster, comma-separated', list)
        .option('--learners <list>', 'node ids that receive the log but do not vote', list, [])
        .requiredOption('--out <file>', 'the seed file to write')
        .option('--force', 'skip the check that no other client uses the database', false),
    ),
  ).action((options: SeedOptions & OutputOptions) => seedCommand(options, context(options)));

  try {
    await program.parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const failure = toCliError(error, signal);
    reporter.failure(failure);
    return failure.exitCode;
  }
}

function withDatabase(command: Command): Command {
  return command
    .requiredOption('--db <url>', "the node's database: postgres://… or a PGlite folder")
    .addOption(schemaOption());
}

function schemaOption(): Option {
  return new Option('--schema <name>', 'the Raft schema of the node').default('raft');
}

function withOutput(command: Command): Command {
  return command
    .option('--json', 'print one JSON document on standard output, nothing else')
    .option('--quiet', 'no progress');
}

/** A comma-separated list: `a,b , c` is `['a', 'b', 'c']`. */
function list(value: string): string[] {
  const items = value.split(',').map((item) => item.trim());
  if (items.some((item) => item === '')) {
    throw new InvalidArgumentError(`"${value}" is not a comma-separated list of names`);
  }
  return items;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
