import type { NodeId } from '../../log-entry.ts';

/** What a seed must show, fixed by its options before it runs. */
export interface SeedExpectations {
  /**
   * What progress the clients' writes must show (a seed that wrote nothing has none to show):
   * - `acknowledged`: a seed that gave writes up and had none acknowledged fails.
   * - `applied`: with leader churn (`leaderChurn`), a seed that gave writes up and had none
   *   acknowledged nor applied fails. A write is acknowledged only if the leader that appended
   *   it lives until it commits and answers, and the client still waits for that attempt; the
   *   churn cuts 60% of new leaders short 1-30 ms after their election, and every 20-120 ms
   *   crashes, restarts or cuts off the leader with probability 0.7. So a seed may commit its
   *   clients' writes and answer none (5 nodes, one entry per AppendEntries: seed 1001014
   *   before `leaderWaitMs` applied 10 writes, gave 13 up and acknowledged none in 33 leader
   *   terms; seed 1000454 after it applied 4 and gave 14 up). Such a seed made progress; that
   *   answers reach clients is checked over a scenario's seeds instead (simulator.test.ts).
   * - `none`: where a plan crashes every leader it finds in C_old,new (`crashInJoint`), a seed
   *   may legitimately acknowledge nothing while faults run. In C_old,new every commit needs
   *   a majority of C_new too; when the new voters hold no entry yet and the leaders' logs start
   *   after a snapshot, each of them needs an InstallSnapshot, which takes longer than a leader
   *   found in C_old,new lives (it crashes with probability 1/2 every 1-10 ms), so nothing
   *   commits until the faults stop (replace-all-joint: a seed stuck so acknowledged 0 writes in
   *   6.5 s).
   */
  readonly progress: 'acknowledged' | 'applied' | 'none';
  /** The name of a scripted schedule the seed must play to its end, if any. */
  readonly schedule?: string;
  /** What the final configuration's voters must be (a membership plan's end, a runbook's). */
  readonly finalVoters?: {
    readonly what: string;
    readonly holds: (voters: readonly NodeId[]) => boolean;
  };
}

/** What a finished run shows that the verdict judges (fields of the simulation's report). */
export interface SeedOutcome {
  readonly writesAcknowledged: number;
  readonly writesUnknown: number;
  /** Distinct client writes the state machines applied, answered or not. */
  readonly writesApplied: number;
  readonly schedulePlayed: boolean;
  /** Sorted. */
  readonly finalVoters: readonly NodeId[];
}

/**
 * The verdict on one seed beyond the checks made while it runs (safety after every event,
 * convergence, equal state, a linearizable history): whether the run showed what its options
 * promise, so that a passing seed proves something. The one place this is judged:
 * `runSimulation` applies it to every seed, so the test batch and `sim --seed N` agree and a
 * failing seed replays as a failure. Returns why the seed fails, or `undefined` if it passes.
 */
export function seedVerdict(expect: SeedExpectations, outcome: SeedOutcome): string | undefined {
  // Every write ends acknowledged or given up (unknown outcome) before a run can converge, so
  // this counts the seeds that wrote: one whose clients only read has no progress to show.
  const applied = expect.progress === 'applied' && outcome.writesApplied > 0;
  if (
    expect.progress !== 'none' &&
    outcome.writesAcknowledged === 0 &&
    outcome.writesUnknown > 0 &&
    !applied
  ) {
    const none =
      expect.progress === 'applied' ? 'none was acknowledged or applied' : 'none was acknowledged';
    return `the seed made no progress: its clients gave up ${outcome.writesUnknown} writes and ${none}`;
  }
  if (expect.schedule !== undefined && !outcome.schedulePlayed) {
    return `the seed did not play ${expect.schedule} to its end`;
  }
  if (expect.finalVoters !== undefined && !expect.finalVoters.holds(outcome.finalVoters)) {
    return `the seed ended with the voters ${outcome.finalVoters.join(',') || '(none)'}, not ${expect.finalVoters.what}`;
  }
  return undefined;
}
