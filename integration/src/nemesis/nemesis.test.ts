import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectProvider } from '@tsraft/testing';
import { describe, expect, it } from 'vitest';
import { formatReport } from './report-table.ts';
import { runNemesis } from './run-nemesis.ts';
import { SCENARIOS } from './scenarios/index.ts';

const provider = await selectProvider({ log: () => {} });
const skipReason =
  provider.name === 'external'
    ? 'the nemesis stops, kills and pauses Postgres servers, which the external provider cannot'
    : undefined;
if (skipReason !== undefined) console.info(`[nemesis] skipped: ${skipReason}`);

/** The schedule's seed; `TSRAFT_NEMESIS_SEED` replays another one. */
const seed = Number(process.env.TSRAFT_NEMESIS_SEED ?? 20_260_101);
const outDir = fileURLToPath(
  new URL(
    `../../../.data/nemesis/vitest-${provider.name}-seed${seed}-${Date.now()}`,
    import.meta.url,
  ),
);

describe.skipIf(skipReason !== undefined)('the nemesis, a short mixed run', () => {
  it('runs every scenario once on three node processes with a Postgres each: every history linearizable, every acknowledged write applied exactly once on every node, equal replicas, every node caught up after each heal', {
    timeout: 10 * 60_000,
  }, async () => {
    const report = await runNemesis({
      seed,
      nodes: 3,
      scenarios: SCENARIOS,
      rounds: SCENARIOS.length,
      postgres: provider,
      outDir,
      holdMs: [1_000, 2_500],
      log: (line) => console.info(line),
    });
    console.info(
      `${formatReport(
        report,
        SCENARIOS.map((scenario) => scenario.name),
      )}\n(replay the schedule with TSRAFT_NEMESIS_SEED=${seed}; history in ${join(outDir, 'history.jsonl')})`,
    );
    expect(report.rounds.map((round) => round.scenario).sort()).toEqual(
      SCENARIOS.map((scenario) => scenario.name).sort(),
    );
    // Not vacuous: every round acknowledged writes and read them back through the checker.
    for (const round of report.rounds) {
      expect(round.operations.ok, `round ${round.round} ${round.scenario}`).toBeGreaterThan(0);
      expect(round.linearizability.operations).toBeGreaterThan(0);
    }
    expect(report.rounds.filter((round) => !round.ok)).toEqual([]);
    expect(report.finalProblems).toEqual([]);
    expect(report.ok).toBe(true);
  });
});
