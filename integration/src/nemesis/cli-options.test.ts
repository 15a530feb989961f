import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseCommandLine, UsageError } from '@tsraft/bench-cli';
import { describe, expect, it } from 'vitest';
import { NEMESIS_COMMAND_LINE, type NemesisCommand, nemesisCommand } from './cli-options.ts';
import { SCENARIOS } from './scenarios/index.ts';

const parse = (args: readonly string[]): NemesisCommand =>
  nemesisCommand(parseCommandLine(NEMESIS_COMMAND_LINE, args));

/** The message a refused command line throws. */
function refusal(...args: string[]): string {
  try {
    parse(args);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  throw new Error(`the command line ${JSON.stringify(args)} was accepted`);
}

const defaults = {
  seed: undefined,
  nodes: 3,
  faults: [],
  postgres: 'select',
  out: undefined,
  clients: 8,
  opTimeoutMs: 2_000,
  holdMs: [2_000, 6_000],
  catchUpBoundMs: 30_000,
};

describe('the nemesis command line', () => {
  it('reads a run of --rounds or --minutes with the defaults of what is not given', () => {
    expect(parse(['--rounds', '16'])).toEqual({
      command: 'run',
      run: { ...defaults, length: { rounds: 16 } },
    });
    expect(parse(['--minutes', '0.2', '--seed', '7'])).toEqual({
      command: 'run',
      run: { ...defaults, seed: 7, length: { durationMs: 12_000 } },
    });
  });

  it('reads every option of a run', () => {
    const args = [
      '--minutes=30',
      '--seed=0',
      '--nodes=5',
      '--faults=kill-leader,pg-hang',
      '--postgres=pglite',
      '--out=/tmp/run',
      '--clients=64',
      '--op-timeout-ms=100',
      '--hold-ms=100-600000',
      '--catch-up-bound-ms=1000',
    ];
    expect(parse(args)).toEqual({
      command: 'run',
      run: {
        seed: 0,
        nodes: 5,
        faults: ['kill-leader', 'pg-hang'],
        length: { durationMs: 30 * 60_000 },
        postgres: 'pglite',
        out: '/tmp/run',
        clients: 64,
        opTimeoutMs: 100,
        holdMs: [100, 600_000],
        catchUpBoundMs: 1_000,
      },
    });
  });

  it('reads --list and --check DIR', () => {
    expect(parse(['--list'])).toEqual({ command: 'list' });
    expect(parse(['--check', '.data/nemesis/x'])).toEqual({
      command: 'check',
      dir: '.data/nemesis/x',
    });
  });

  it('refuses an unknown option, a missing value and a bare argument', () => {
    expect(refusal('--minutes', '1', '--bogus')).toBe("Unknown option '--bogus'");
    expect(refusal('--minutes')).toBe("Option '--minutes <value>' argument missing");
    expect(refusal('--rounds', '2', 'kill-leader')).toMatch(/^Unexpected argument 'kill-leader'/);
  });

  it('refuses a command line that asks for no command or for more than one', () => {
    const which =
      'give one of --minutes M (a long run), --rounds N (that many faults), --check DIR or --list';
    expect(refusal()).toBe(which);
    expect(refusal('--seed', '7')).toBe(which);
    expect(refusal('--minutes', '1', '--rounds', '2')).toBe(
      `--minutes and --rounds do not go together: ${which}`,
    );
    expect(refusal('--list', '--check', 'x')).toBe(
      `--check and --list do not go together: ${which}`,
    );
  });

  it('refuses the options of a run with --list and --check', () => {
    expect(refusal('--list', '--seed', '3')).toBe(
      '--seed is an option of a run (--minutes or --rounds), not of --list',
    );
    expect(refusal('--check', 'x', '--postgres', 'pglite')).toBe(
      '--postgres is an option of a run (--minutes or --rounds), not of --check',
    );
    expect(refusal('--check', ' ')).toBe('--check takes a folder, not " "');
  });

  it('refuses --minutes that is not a number of minutes above 0, up to a day', () => {
    for (const minutes of ['0', '-1', 'abc', '', '1441', 'Infinity']) {
      expect(refusal(`--minutes=${minutes}`)).toBe(
        `--minutes takes a number above 0 and at most 1440, not "${minutes}"`,
      );
    }
    expect(refusal('--minutes', '-1')).toMatch(/^Option '--minutes' argument is ambiguous/);
    expect(parse(['--minutes', '1440'])).toMatchObject({
      run: { length: { durationMs: 86_400_000 } },
    });
  });

  it('refuses --rounds, --seed, --clients and the milliseconds out of their ranges', () => {
    expect(refusal('--rounds', '0')).toBe('--rounds takes an integer in [1, 100000], not "0"');
    expect(refusal('--rounds', '1.5')).toBe('--rounds takes an integer in [1, 100000], not "1.5"');
    for (const seed of ['x', '1.5', '2147483648', '-1']) {
      expect(refusal('--rounds', '1', `--seed=${seed}`)).toBe(
        `--seed takes an integer in [0, 2147483647], not "${seed}"`,
      );
    }
    expect(refusal('--rounds', '1', '--clients', '65')).toBe(
      '--clients takes an integer in [1, 64], not "65"',
    );
    expect(refusal('--rounds', '1', '--op-timeout-ms', '99')).toBe(
      '--op-timeout-ms takes an integer in [100, 600000], not "99"',
    );
    expect(refusal('--rounds', '1', '--catch-up-bound-ms', '999')).toBe(
      '--catch-up-bound-ms takes an integer in [1000, 3600000], not "999"',
    );
  });

  it('refuses --nodes other than 3 or 5', () => {
    for (const nodes of ['4', '1', '7', 'five']) {
      expect(refusal('--rounds', '1', '--nodes', nodes)).toBe(
        `--nodes takes one of 3, 5, not "${nodes}"`,
      );
    }
  });

  it('refuses --hold-ms that is not MIN-MAX with MIN <= MAX in [100, 600000]', () => {
    for (const hold of ['6000-2000', '50-100', '2000', '1-2-3', 'a-b', '2000-']) {
      expect(refusal('--rounds', '1', `--hold-ms=${hold}`)).toBe(
        `--hold-ms takes MIN-MAX, two integers of milliseconds in [100, 600000] with MIN <= MAX (e.g. 2000-6000), not "${hold}"`,
      );
    }
    expect(parse(['--rounds', '1', '--hold-ms', '500-500'])).toMatchObject({
      run: { holdMs: [500, 500] },
    });
  });

  it('refuses a scenario that does not exist, a Postgres it does not know and a blank --out', () => {
    expect(refusal('--rounds', '1', '--faults', 'kill-leader,kill-everyone')).toBe(
      `--faults takes one of ${SCENARIOS.map((s) => s.name).join(', ')}, not "kill-everyone"`,
    );
    expect(refusal('--rounds', '1', '--postgres', 'external')).toBe(
      '--postgres takes one of testcontainers, embedded, pglite, not "external"',
    );
    expect(refusal('--rounds', '1', '--out', '')).toBe('--out takes a folder, not ""');
  });
});

describe('the nemesis program', () => {
  const run = promisify(execFile);
  const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
  /**
   * Runs the program with a `TSRAFT_PG_PROVIDER` it refuses: a command line it should refuse
   * but took would end there, before any cluster or Postgres server starts.
   */
  const nemesis = (args: string[]) =>
    run(process.execPath, ['--conditions=@tsraft/source', cli, ...args], {
      env: { ...process.env, TSRAFT_PG_PROVIDER: 'none-in-this-test' },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
  const OPTIONS =
    '(options: --minutes, --rounds, --seed, --nodes, --faults, --clients, --postgres, --out, --hold-ms, --op-timeout-ms, --catch-up-bound-ms, --check, --list, --help)';

  it('refuses a bad command line in one line on stderr, with exit status 2, before anything starts', async () => {
    const refused = await nemesis(['--nodes', '4', '--minutes', '1']);
    expect(refused).toMatchObject({
      code: 2,
      stdout: '',
      stderr: `nemesis: --nodes takes one of 3, 5, not "4" ${OPTIONS}\n`,
    });
    const unknown = await nemesis(['--minutes', '1', '--bogus']);
    expect(unknown).toMatchObject({
      code: 2,
      stdout: '',
      stderr: `nemesis: Unknown option '--bogus' ${OPTIONS}\n`,
    });
  });

  it('refuses a TSRAFT_PG_PROVIDER it does not know in one line when --postgres is not given', async () => {
    const refused = await nemesis(['--rounds', '1']);
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toMatch(
      /^nemesis: TSRAFT_PG_PROVIDER="none-in-this-test" is not a Postgres provider; [^\n]+ \(options: [^\n]+\)\n$/,
    );
  });

  it('refuses --check of a folder without a history, and checks one again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsraft-nemesis-cli-'));
    try {
      const missing = await nemesis(['--check', dir]);
      expect(missing).toMatchObject({
        code: 2,
        stdout: '',
        stderr: `nemesis: --check takes a run's folder; ${dir} has no history.jsonl ${OPTIONS}\n`,
      });
      await writeFile(join(dir, 'history.jsonl'), '');
      const checked = await nemesis(['--check', dir]);
      expect(checked).toMatchObject({ code: 0, stderr: '' });
      expect(checked.stdout).toBe(
        '0 operations in 0 rounds; 0 linearizable, 0 not (or undecided)\n',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prints its usage on --help and exits with status 0', async () => {
    const help = await nemesis(['--help']);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: \.\/dev --filter @tsraft\/integration nemesis/);
  });
});
