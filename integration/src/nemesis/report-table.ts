import type { NemesisReport, RoundReport } from './run-nemesis.ts';

/**
 * The report of a run as text: one table row per scenario (its rounds, operations by outcome,
 * verdict, leader changes, recovery times), a total row, then the problems and the headline
 * numbers. Columns: `elected ms`: from the fault's injection to the first election won after it
 * (rounds with one); `leader ms`: from the heal to a leader a majority follows; `caught up ms`:
 * from the heal until every node applied what was committed when that leader was seen.
 */
export function formatReport(report: NemesisReport, order: readonly string[]): string {
  const byScenario = new Map<string, RoundReport[]>();
  for (const name of order) byScenario.set(name, []);
  for (const round of report.rounds) {
    const rounds = byScenario.get(round.scenario) ?? [];
    rounds.push(round);
    byScenario.set(round.scenario, rounds);
  }
  const header = [
    'scenario',
    'rounds',
    'ops',
    'ok',
    'failed',
    'unknown',
    'verdict',
    'leader changes',
    'elected ms p50/max',
    'leader ms p50/max',
    'caught up ms p50/max',
  ];
  const rows: string[][] = [];
  for (const [name, rounds] of byScenario) {
    if (rounds.length > 0) rows.push(row(name, rounds));
  }
  rows.push(row('total', report.rounds));
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((cells) => (cells[i] as string).length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) =>
        i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number),
      )
      .join('  ');
  const out = [line(header), line(widths.map((width) => '-'.repeat(width)))];
  for (const [i, cells] of rows.entries()) {
    if (i === rows.length - 1) out.push(line(widths.map((width) => '-'.repeat(width))));
    out.push(line(cells));
  }
  out.push('');
  const failed = report.rounds.filter((round) => !round.ok);
  for (const round of failed) {
    out.push(
      `round ${round.round} ${round.scenario} (${round.detail}) FAILED (load ${round.load.average}, harness lag max ${round.load.harnessLagMaxMs} ms):`,
    );
    for (const problem of round.problems) out.push(`  - ${problem}`);
  }
  for (const problem of report.finalProblems) out.push(`FAILED ${problem}`);
  out.push(...headline(report));
  return out.join('\n');
}

function row(name: string, rounds: readonly RoundReport[]): string[] {
  const sum = (pick: (round: RoundReport) => number): number =>
    rounds.reduce((total, round) => total + pick(round), 0);
  const recovered = rounds.flatMap((round) => (round.recovery === null ? [] : [round.recovery]));
  const failures = rounds.filter((round) => !round.ok).length;
  return [
    name,
    String(rounds.length),
    String(sum((round) => round.operations.total)),
    String(sum((round) => round.operations.ok)),
    String(sum((round) => round.operations.failed)),
    String(sum((round) => round.operations.unknown)),
    failures === 0 ? 'ok' : `FAIL ${failures}/${rounds.length}`,
    String(sum((round) => round.leaderChanges)),
    percentiles(
      rounds.flatMap((round) => (round.electedAfterMs === null ? [] : [round.electedAfterMs])),
    ),
    percentiles(recovered.map((recovery) => recovery.leaderMs)),
    percentiles(recovered.map((recovery) => recovery.caughtUpMs)),
  ];
}

/** p50/max of `values` as they are; `-` when there is none. */
function spread(values: readonly number[]): string {
  if (values.length === 0) return '-';
  const sorted = [...values].sort((a, b) => a - b);
  return `${sorted[Math.floor((sorted.length - 1) / 2)]}/${sorted.at(-1)}`;
}

function percentiles(values: readonly number[]): string {
  if (values.length === 0) return '-';
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as number;
  return `${Math.round(median)}/${Math.round(sorted.at(-1) as number)}`;
}

function headline(report: NemesisReport): string[] {
  const ops = report.rounds.map((round) => round.operations);
  const total = ops.reduce((sum, o) => sum + o.total, 0);
  const unknown = ops.reduce((sum, o) => sum + o.unknown, 0);
  const failed = ops.reduce((sum, o) => sum + o.failed, 0);
  const checked = report.rounds.reduce((sum, round) => sum + round.linearizability.operations, 0);
  const verdicts = new Map<string, number>();
  for (const round of report.rounds) {
    verdicts.set(
      round.linearizability.verdict,
      (verdicts.get(round.linearizability.verdict) ?? 0) + 1,
    );
  }
  const slowest = report.rounds
    .filter((round) => round.recovery !== null)
    .sort((a, b) => (b.recovery?.caughtUpMs ?? 0) - (a.recovery?.caughtUpMs ?? 0))[0];
  const stuck = report.rounds.filter((round) => round.recovery === null).length;
  return [
    `faults injected: ${report.rounds.length} (${report.nodes} nodes, ${report.postgres}, seed ${report.seed}, ${(report.durationMs / 60_000).toFixed(1)} min)`,
    `operations: ${total}; ${checked} checked for linearizability (failed reads left out), ${unknown} with an unknown outcome, ${failed} failed reads`,
    `linearizability verdicts per round: ${[...verdicts].map(([verdict, count]) => `${verdict} ${count}`).join(', ')}`,
    slowest === undefined
      ? 'slowest recovery: none measured'
      : `slowest recovery: every node caught up ${Math.round(slowest.recovery?.caughtUpMs ?? 0)} ms after healing (round ${slowest.round}, ${slowest.scenario}: ${slowest.detail}); bound ${report.catchUpBoundMs} ms, ${stuck} round(s) past it`,
    `machine: 1-minute load average ${spread(report.rounds.map((round) => round.load.average))} over the rounds (p50/max), harness event-loop lag max ${spread(report.rounds.map((round) => round.load.harnessLagMaxMs))} ms`,
    `final checks (exactly-once over every round, replicas equal): ${report.finalProblems.length === 0 ? 'ok' : 'FAILED'}`,
    `verdict: ${report.ok ? 'PASS' : 'FAIL'}; histories and logs in ${report.outDir}`,
  ];
}
