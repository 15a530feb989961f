/**
 * The nemesis from the command line:
 *
 *   ./dev --filter @tsraft/integration nemesis --minutes 30 --seed 7 [--nodes 5] [--faults kill-leader,pg-hang]
 *   ./dev --filter @tsraft/integration nemesis --rounds 16 --seed 7      (each scenario once)
 *   ./dev --filter @tsraft/integration nemesis --check .data/nemesis/<run>   (checks a recorded history again)
 *   ./dev --filter @tsraft/integration nemesis --list
 *
 * Postgres: `--postgres testcontainers|embedded|pglite`, default as the integration tests choose
 * (`TSRAFT_PG_PROVIDER`, else testcontainers when Docker answers and has the image, else embedded).
 * Prints a table per scenario and exits 1 when any check failed. A bad command line (see
 * `cli-options.ts`, or `--help`) is refused in one line, with exit status 2, before anything starts.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchCommandLine, UsageError } from '@tsraft/bench-cli';
import {
  EmbeddedProvider,
  forcedProviderName,
  type PostgresProvider,
  selectProvider,
  TestcontainersProvider,
} from '@tsraft/testing';
import { checkLinearizable } from './checks.ts';
import { NEMESIS_COMMAND_LINE, nemesisCommand, type PostgresChoice } from './cli-options.ts';
import { readHistory } from './history.ts';
import { formatReport } from './report-table.ts';
import { runNemesis } from './run-nemesis.ts';
import { SCENARIOS, scenariosNamed } from './scenarios/index.ts';

const DATA_DIR = fileURLToPath(new URL('../../../.data/nemesis/', import.meta.url));

/**
 * The Postgres servers of a run. Refuses (a `UsageError`) a bad `TSRAFT_PG_PROVIDER` and, when
 * `--postgres` is not given, the external provider: the nemesis stops, kills and pauses servers.
 */
async function postgres(choice: PostgresChoice): Promise<PostgresProvider | 'pglite'> {
  switch (choice) {
    case 'pglite':
      return 'pglite';
    case 'embedded':
      return new EmbeddedProvider();
    case 'testcontainers':
      return new TestcontainersProvider();
    case 'select': {
      try {
        forcedProviderName();
      } catch (error) {
        throw new UsageError((error as Error).message.replace(/\.$/, ''));
      }
      const provider = await selectProvider();
      if (provider.name === 'external') {
        throw new UsageError(
          'the nemesis stops, kills and pauses Postgres, not external servers: give --postgres testcontainers, embedded or pglite',
        );
      }
      return provider;
    }
  }
}

/** Checks the history a run recorded in `dir` again: the exit status, 1 when a round is not linearizable. */
async function checkAgain(dir: string): Promise<number> {
  const history = await readHistory(join(dir, 'history.jsonl'));
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
  return illegal === 0 ? 0 : 1;
}

const command = await benchCommandLine(NEMESIS_COMMAND_LINE, async (line) => {
  const command = nemesisCommand(line);
  switch (command.command) {
    case 'list':
      return command;
    case 'check':
      await access(join(command.dir, 'history.jsonl')).catch(() => {
        throw new UsageError(`--check takes a run's folder; ${command.dir} has no history.jsonl`);
      });
      return command;
    case 'run':
      return { ...command, postgres: await postgres(command.run.postgres) };
  }
});

if (command.command === 'list') {
  for (const scenario of SCENARIOS) console.log(`${scenario.name.padEnd(20)} ${scenario.summary}`);
  process.exit(0);
}
if (command.command === 'check') process.exit(await checkAgain(command.dir));

const { run } = command;
const seed = run.seed ?? Math.floor(Math.random() * 1_000_000);
const outDir =
  run.out ?? join(DATA_DIR, `${new Date().toISOString().replace(/[:.]/g, '-')}-seed${seed}`);
const controller = new AbortController();
for (const name of ['SIGINT', 'SIGTERM'] as const) {
  process.once(name, () => controller.abort(new Error(`interrupted (${name})`)));
}

const scenarios = scenariosNamed(run.faults);
console.log(
  `[nemesis] seed ${seed}, ${run.nodes} nodes, ${scenarios.length} scenarios, ${'rounds' in run.length ? `${run.length.rounds} rounds` : `${run.length.durationMs / 60_000} minutes`}; output in ${outDir}`,
);
const report = await runNemesis({
  seed,
  nodes: run.nodes,
  scenarios,
  ...run.length,
  postgres: command.postgres,
  outDir,
  clients: run.clients,
  opTimeoutMs: run.opTimeoutMs,
  holdMs: run.holdMs,
  catchUpBoundMs: run.catchUpBoundMs,
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
