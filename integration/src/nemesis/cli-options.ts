/**
 * The nemesis' command line (`cli.ts`), read without side effects: which of its four commands it
 * asks for and, for a run, the run's settings. A bad command line is a `UsageError` that names the
 * option at fault; the program prints it in one line with the options and exits with status 2.
 */
import type { parseArgs } from 'node:util';
import {
  type CommandLine,
  type CommandLineSpec,
  choiceListOption,
  choiceOption,
  integerOption,
  numberOption,
  UsageError,
} from '@tsraft/bench-cli';
import { SCENARIOS } from './scenarios/index.ts';

/** How the run gets its Postgres servers; `select` is the integration tests' own choice. */
export type PostgresChoice = 'select' | 'testcontainers' | 'embedded' | 'pglite';

/** A run's settings, as `runNemesis` takes them (less what the program adds). */
interface NemesisRunSettings {
  /** Undefined when not given: the program draws one. */
  readonly seed: number | undefined;
  readonly nodes: number;
  /** Names of the scenarios to mix, in the order given (every scenario when empty). */
  readonly faults: readonly string[];
  /** Exactly one of `durationMs` (`--minutes`) and `rounds`. */
  readonly length: { readonly durationMs: number } | { readonly rounds: number };
  readonly postgres: PostgresChoice;
  /** Undefined when not given: a new folder under `.data/nemesis/`. */
  readonly out: string | undefined;
  readonly clients: number;
  readonly opTimeoutMs: number;
  readonly holdMs: readonly [number, number];
  readonly catchUpBoundMs: number;
}

/** What the command line asks for. */
export type NemesisCommand =
  | { readonly command: 'list' }
  | { readonly command: 'check'; readonly dir: string }
  | { readonly command: 'run'; readonly run: NemesisRunSettings };

/** The options that only a run (`--minutes` or `--rounds`) takes. */
const RUN_OPTIONS = [
  'seed',
  'nodes',
  'faults',
  'clients',
  'postgres',
  'out',
  'hold-ms',
  'op-timeout-ms',
  'catch-up-bound-ms',
] as const;

/** The options that say what to do: exactly one is given. */
const COMMANDS = ['minutes', 'rounds', 'check', 'list'] as const;

/**
 * The options, as `parseArgs` takes them. None has a default there: an option of a run given to
 * `--check` or `--list` is refused, so whether it was given must show; {@link nemesisCommand}
 * applies the defaults.
 */
type NemesisOptions = {
  readonly [name in Exclude<(typeof COMMANDS)[number] | (typeof RUN_OPTIONS)[number], 'list'>]: {
    readonly type: 'string';
  };
} & { readonly list: { readonly type: 'boolean' } };

type Values = ReturnType<typeof parseArgs<{ options: NemesisOptions }>>['values'];

const STRING = { type: 'string' } as const;

export const NEMESIS_COMMAND_LINE: CommandLineSpec<NemesisOptions> = {
  program: 'nemesis',
  options: {
    minutes: STRING,
    rounds: STRING,
    seed: STRING,
    nodes: STRING,
    faults: STRING,
    clients: STRING,
    postgres: STRING,
    out: STRING,
    'hold-ms': STRING,
    'op-timeout-ms': STRING,
    'catch-up-bound-ms': STRING,
    check: STRING,
    list: { type: 'boolean' },
  },
  usage: `Usage: ./dev --filter @tsraft/integration nemesis <command> [options]
  --minutes M [options]   a long run: rounds of faults until M minutes have passed (up to 1440)
  --rounds N [options]    N rounds, one fault each (each scenario once per cycle)
  --check DIR             checks the history a run recorded in DIR again
  --list                  lists the scenarios
Options of a run:
  --seed S                seeds the schedule (an integer in [0, 2147483647]; default: drawn)
  --nodes 3|5             nodes in the cluster (default 3)
  --faults A,B            the scenarios to mix (default: all; see --list)
  --postgres P            testcontainers, embedded or pglite (default: as the integration tests)
  --clients N             logical clients (default 8)
  --hold-ms MIN-MAX       how long each fault is held (default 2000-6000)
  --op-timeout-ms N       deadline of one client operation (default 2000)
  --catch-up-bound-ms N   every node must have caught up this long after a heal (default 30000)
  --out DIR               where the run's files go (default .data/nemesis/<time>-seed<S>)`,
};

const NODE_COUNTS = ['3', '5'] as const;
const POSTGRES = ['testcontainers', 'embedded', 'pglite'] as const;

/**
 * The command a parsed command line asks for. Throws a `UsageError` when it asks for none or for
 * more than one (`--minutes`, `--rounds`, `--check`, `--list`), gives an option of a run to
 * `--check` or `--list`, or gives a value out of its option's range.
 */
export function nemesisCommand(line: CommandLine<NemesisOptions>): NemesisCommand {
  const { values } = line;
  const commands = COMMANDS.filter((name) => values[name] !== undefined);
  const [command] = commands;
  if (command === undefined || commands.length > 1) {
    const given =
      commands.length > 1
        ? `${commands.map((name) => `--${name}`).join(' and ')} do not go together: `
        : '';
    throw new UsageError(
      `${given}give one of --minutes M (a long run), --rounds N (that many faults), --check DIR or --list`,
    );
  }
  if (command === 'list' || command === 'check') {
    const runOption = RUN_OPTIONS.find((name) => values[name] !== undefined);
    if (runOption !== undefined) {
      throw new UsageError(
        `--${runOption} is an option of a run (--minutes or --rounds), not of --${command}`,
      );
    }
    if (command === 'list') return { command };
    return { command, dir: text('--check', values.check as string, 'a folder') };
  }
  return { command: 'run', run: runSettings(values) };
}

function runSettings(values: Values): NemesisRunSettings {
  /** An integer option in [min, max], `fallback` when not given. */
  const integer = (name: keyof Values, fallback: number, min: number, max: number): number => {
    const given = values[name];
    return given === undefined ? fallback : integerOption(`--${name}`, String(given), { min, max });
  };
  return {
    seed: values.seed === undefined ? undefined : integer('seed', 0, 0, 2 ** 31 - 1),
    nodes: Number(choiceOption('--nodes', values.nodes ?? '3', NODE_COUNTS)),
    faults:
      values.faults === undefined
        ? []
        : choiceListOption(
            '--faults',
            values.faults,
            SCENARIOS.map((scenario) => scenario.name),
          ),
    length:
      values.minutes === undefined
        ? { rounds: integer('rounds', 1, 1, 100_000) }
        : {
            durationMs:
              numberOption('--minutes', values.minutes, { above: 0, atMost: 24 * 60 }) * 60_000,
          },
    postgres:
      values.postgres === undefined
        ? 'select'
        : choiceOption('--postgres', values.postgres, POSTGRES),
    out: values.out === undefined ? undefined : text('--out', values.out, 'a folder'),
    clients: integer('clients', 8, 1, 64),
    opTimeoutMs: integer('op-timeout-ms', 2_000, 100, 600_000),
    holdMs: values['hold-ms'] === undefined ? [2_000, 6_000] : holdRange(values['hold-ms']),
    catchUpBoundMs: integer('catch-up-bound-ms', 30_000, 1_000, 3_600_000),
  };
}

/** `MIN-MAX` in milliseconds, each in [100, 600000], MIN at most MAX. */
function holdRange(given: string): [number, number] {
  const parts = given.split('-');
  const refuse = () =>
    new UsageError(
      `--hold-ms takes MIN-MAX, two integers of milliseconds in [100, 600000] with MIN <= MAX (e.g. 2000-6000), not "${given}"`,
    );
  if (parts.length !== 2) throw refuse();
  const [min, max] = parts.map((part) => {
    try {
      return integerOption('--hold-ms', part, { min: 100, max: 600_000 });
    } catch {
      throw refuse();
    }
  });
  if (min === undefined || max === undefined || min > max) throw refuse();
  return [min, max];
}

/** A non-blank text, e.g. a folder. */
function text(flag: string, given: string, kind: string): string {
  if (given.trim() === '') throw new UsageError(`${flag} takes ${kind}, not "${given}"`);
  return given;
}
