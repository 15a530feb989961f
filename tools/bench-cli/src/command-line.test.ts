import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine, usageLine } from './command-line.ts';
import { UsageError } from './usage-error.ts';

const spec = {
  program: 'demo',
  options: {
    seconds: { type: 'string', default: '3' },
    verbose: { type: 'boolean', default: false },
    serve: { type: 'string' },
  },
  internal: ['serve'],
} as const;

function refusal(args: readonly string[], withSpec: Parameters<typeof parseCommandLine>[0] = spec) {
  try {
    parseCommandLine(withSpec, args);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  throw new Error(`the command line ${JSON.stringify(args)} was accepted`);
}

describe('parseCommandLine', () => {
  it('gives the defaults of options not given and the values of those given', () => {
    expect(parseCommandLine(spec, []).values).toEqual({ seconds: '3', verbose: false });
    const line = parseCommandLine(spec, ['--seconds', '1.5', '--verbose', '--serve=7']);
    expect(line.values).toEqual({ seconds: '1.5', verbose: true, serve: '7' });
    expect(line.help).toBe(false);
  });

  it("refuses an unknown option, a missing value and a bare argument in parseArgs' first sentence", () => {
    expect(refusal(['--bogus'])).toBe("Unknown option '--bogus'");
    expect(refusal(['--seconds'])).toBe("Option '--seconds <value>' argument missing");
    expect(refusal(['--verbose=yes'])).toMatch(/^Option '--verbose' does not take an argument/);
    expect(refusal(['extra'])).toMatch(/^Unexpected argument 'extra'/);
    expect(refusal(['--seconds', '-1'])).toBe(
      "Option '--seconds' argument is ambiguous; to specify an option argument starting with a dash use '--seconds=-XYZ'",
    );
    expect(parseCommandLine(spec, ['--seconds=-1']).values.seconds).toBe('-1');
    for (const args of [['--bogus'], ['--seconds'], ['extra'], ['--seconds', '-1']]) {
      expect(refusal(args)).not.toContain('\n');
    }
  });

  it('takes bare arguments only when the spec allows them', () => {
    const line = parseCommandLine({ ...spec, allowPositionals: true }, ['a', '--verbose', 'b']);
    expect(line.positionals).toEqual(['a', 'b']);
    expect(line.values.verbose).toBe(true);
  });

  it('knows --help and -h only when the spec has a usage text', () => {
    expect(refusal(['--help'])).toBe("Unknown option '--help'");
    const withUsage = { ...spec, usage: 'Usage: demo [--seconds S]' };
    expect(parseCommandLine(withUsage, ['--help']).help).toBe(true);
    expect(parseCommandLine(withUsage, ['-h']).help).toBe(true);
    expect(parseCommandLine(withUsage, ['--seconds', '2'])).toEqual({
      values: { seconds: '2', verbose: false },
      positionals: [],
      help: false,
    });
  });
});

describe('usageLine', () => {
  it('names the program, the fault and every option but the internal ones', () => {
    expect(usageLine(spec, 'x')).toBe('demo: x (options: --seconds, --verbose)');
    expect(usageLine({ ...spec, usage: 'u' }, 'x')).toBe(
      'demo: x (options: --seconds, --verbose, --help)',
    );
    expect(usageLine({ program: 'p', options: {} }, 'x')).toBe('p: x (no options)');
  });
});

describe('benchCommandLine, in a program of its own', () => {
  let dir: string;
  let program: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-cli-'));
    program = join(dir, 'program.mjs');
    const index = new URL('./index.ts', import.meta.url).href;
    await writeFile(
      program,
      `import { benchCommandLine, integerOption } from '${index}';
const options = await benchCommandLine(
  { program: 'demo', options: { rounds: { type: 'string', default: '2' }, crash: { type: 'boolean' } }, usage: 'Usage: demo [--rounds N]' },
  ({ values }) => {
    if (values.crash) throw new TypeError('not a usage error');
    return { rounds: integerOption('--rounds', values.rounds, { min: 1 }) };
  },
);
console.log(JSON.stringify(options));
`,
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function run(...args: string[]) {
    return promisify(execFile)(process.execPath, [program, ...args]).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
  }

  it('refuses an unknown option in one line on stderr, with exit status 2', async () => {
    const { code, stdout, stderr } = await run('--bogus');
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toBe("demo: Unknown option '--bogus' (options: --rounds, --crash, --help)\n");
  });

  it('refuses a value its validator rejects the same way', async () => {
    const { code, stderr } = await run('--rounds', '0');
    expect(code).toBe(2);
    expect(stderr).toBe(
      'demo: --rounds takes a positive integer, not "0" (options: --rounds, --crash, --help)\n',
    );
  });

  it('gives the values read, prints the usage on --help, and lets other errors through', async () => {
    expect(await run('--rounds', '5')).toEqual({ code: 0, stdout: '{"rounds":5}\n', stderr: '' });
    expect(await run('--help')).toEqual({
      code: 0,
      stdout: 'Usage: demo [--rounds N]\n',
      stderr: '',
    });
    const crash = await run('--crash');
    expect(crash.code).toBe(1);
    expect(crash.stderr).toContain('TypeError: not a usage error');
  });
});
