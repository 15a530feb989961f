import type { NodeId } from '../../log-entry.ts';

/** What a seed must show, fixed by its options before it runs. */
export interface SeedExpectations {
  /**
   * The clients' writes must make progress: a seed that gave writes up and acknowledged none
   * fails. False where a plan crashes every leader it finds in C_old,new (`crashInJoint`): then
   * a seed may legitimately acknowledge nothing while faults run. In C_old,new every commit needs
   * a majority of C_new too; when the new voters hold no entry yet and the leaders' logs start
   * after a snapshot, each of them needs an InstallSnapshot, which takes longer than a leader
   * found in C_old,new lives (it crashes with probability 1/2 every 1-10 ms), so nothing commits
   * until the faults stop (replace-all-joint: a seed stuck so acknowledged 0 writes in 6.5 s).
   */
  readonly progress: boolean;
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
  if (expect.progress && outcome.writesAcknowledged === 0 && outcome.writesUnknown > 0) {
    return `the seed made no progress: its clients gave up ${outcome.writesUnknown} writes and none was acknowledged`;
  }
  if (expect.schedule !== undefined && !outcome.schedulePlayed) {
    return `the seed did not play ${expect.schedule} to its end`;
  }
  if (expect.finalVoters !== undefined && !expect.finalVoters.holds(outcome.finalVoters)) {
    return `the seed ended with the voters ${outcome.finalVoters.join(',') || '(none)'}, not ${expect.finalVoters.what}`;
  }
  return undefined;
}
