/**
 * The nemesis from the command line:
 *
 *   ./dev --filter @tsraft/integration nemesis --minutes 30 --seed 7 [--nodes 5] [--faults kill-leader,pg-hang]
 *   ./dev --filter @tsraft/integration nemesis --rounds 13 --seed 7      (each scenario once)
 *   ./dev --filter @tsraft/integration nemesis --check .data/nemesis/<run>   (checks a recorded history again)
 *   ./dev --filter @tsraft/integration nemesis --list
 *
 * Postgres: `--postgres testcontainers|embedded|pglite`, default as the integration tests choose
 * (`TSRAFT_PG_PROVIDER`, else testcontainers when Docker answers and has the image, else embedded).
 * Prints a table per scenario and exits 1 when any check failed.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  EmbeddedProvider,
  type PostgresProvider,
  selectProvider,
  TestcontainersProvider,
} from '@tsraft/testing';
import { checkLinearizable } from './checks.ts';
import { readHistory } from './history.ts';
import { formatReport } from './report-table.ts';
import { runNemesis } from './run-nemesis.ts';
import { SCENARIOS, scenariosNamed } from './scenarios/index.ts';

const DATA_DIR = fileURLToPath(new URL('../../../.data/nemesis/', import.meta.url));

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    rounds: { type: 'string' },
    seed: { type: 'string' },
    nodes: { type: 'string', default: '3' },
    faults: { type: 'string', default: '' },
    clients: { type: 'string', default: '8' },
    postgres: { type: 'string' },
    out: { type: 'string' },
    'hold-ms': { type: 'string', default: '2000-6000' },
    'op-timeout-ms': { type: 'string', default: '2000' },
    'catch-up-bound-ms': { type: 'string', default: '30000' },
    check: { type: 'string' },
    list: { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  console.error(`nemesis: ${message}`);
  process.exit(2);
}

function integer(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    fail(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  return n;
}

function minutes(text: string): number {
  const n = Number(text);
  if (!(n > 0 && n <= 24 * 60))
    fail(`--minutes must be a positive number of minutes, got "${text}"`);
  return n;
}

if (values.list) {
  for (const scenario of SCENARIOS) console.log(`${scenario.name.padEnd(20)} ${scenario.summary}`);
  process.exit(0);
}

if (values.check !== undefined) {
  const history = await readHistory(join(values.check, 'history.jsonl'));
  const rounds = [...new Set(history.map((op) => op.round))].sort((a, b) => a - b);
  let illegal = 0;
  for (const round of rounds) {
    const verdict = checkLinearizable(history.filter((op) => op.round === round));
    if (verdict.verdict !== 'ok') {
      illegal++;
      console.log(`round ${round}: ${verdict.verdict}\n${verdict.message}`);
    }
  }
  console.log(
    `${history.length} operations in ${rounds.length} rounds; ${rounds.length - illegal} linearizable, ${illegal} not (or undecided)`,
  );
  process.exit(illegal === 0 ? 0 : 1);
}

if ((values.minutes === undefined) === (values.rounds === undefined)) {
  fail('give --minutes N (a long run) or --rounds N (that many faults), not both');
}
const seed =
  values.seed === undefined
    ? Math.floor(Math.random() * 1_000_000)
    : integer('seed', values.seed, 0, 2 ** 31);
const nodes = integer('nodes', values.nodes, 3, 9);
const [holdMin, holdMax] = values['hold-ms']
  .split('-')
  .map((part) => integer('hold-ms', part, 100, 600_000));
if (holdMin === undefined || holdMax === undefined || holdMin > holdMax) {
  fail('--hold-ms must be MIN-MAX in milliseconds, e.g. 2000-6000');
}
let scenarios: ReturnType<typeof scenariosNamed> = [];
try {
  scenarios = scenariosNamed(values.faults.split(',').filter((name) => name.trim() !== ''));
} catch (error) {
  fail((error as Error).message);
}

async function postgres(): Promise<PostgresProvider | 'pglite'> {
  switch (values.postgres) {
    case undefined: {
      const provider = await selectProvider();
      if (provider.name === 'external') {
        fail(
          'the nemesis stops, kills and pauses Postgres: use embedded, testcontainers or pglite',
        );
      }
      return provider;
    }
    case 'pglite':
      return 'pglite';
    case 'embedded':
      return new EmbeddedProvider();
    case 'testcontainers':
      return new TestcontainersProvider();
    default:
      return fail(
        `--postgres must be testcontainers, embedded or pglite, got "${values.postgres}"`,
      );
  }
}

const provider = await postgres();
const outDir =
  values.out ?? join(DATA_DIR, `${new Date().toISOString().replace(/[:.]/g, '-')}-seed${seed}`);
const controller = new AbortController();
for (const name of ['SIGINT', 'SIGTERM'] as const) {
  process.once(name, () => controller.abort(new Error(`interrupted (${name})`)));
}

console.log(
  `[nemesis] seed ${seed}, ${nodes} nodes, ${scenarios.length} scenarios, ${values.minutes === undefined ? `${values.rounds} rounds` : `${values.minutes} minutes`}; output in ${outDir}`,
);
const report = await runNemesis({
  seed,
  nodes,
  scenarios,
  ...(values.minutes === undefined
    ? { rounds: integer('rounds', values.rounds as string, 1, 100_000) }
    : { durationMs: minutes(values.minutes as string) * 60_000 }),
  postgres: provider,
  outDir,
  clients: integer('clients', values.clients, 1, 64),
  opTimeoutMs: integer('op-timeout-ms', values['op-timeout-ms'], 100, 600_000),
  holdMs: [holdMin, holdMax],
  catchUpBoundMs: integer('catch-up-bound-ms', values['catch-up-bound-ms'], 1_000, 3_600_000),
  log: (line) => console.log(line),
  signal: controller.signal,
});
console.log(
  `\n${formatReport(
    report,
    SCENARIOS.map((scenario) => scenario.name),
  )}`,
);
process.exit(report.ok ? 0 : 1);
