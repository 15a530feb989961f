import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MembershipPlanRun } from './membership-plans.ts';
import { type SeedOutcome, seedVerdict } from './seed-verdict.ts';
import { CALM_DISK } from './sim-process.ts';
import { runSimulation, type SimulationOptions } from './simulator.ts';

const run = promisify(execFile);
const packageRoot = fileURLToPath(new URL('../../..', import.meta.url));

/**
 * Every message is lost until the faults heal at 3 s, so no leader is elected while the clients'
 * single operations wait (1.5 s, then given up); after healing they start no new ones. Seed 1's
 * one write is given up: the seed made no progress, though it converges and its history is
 * linearizable.
 */
const NO_PROGRESS: SimulationOptions = {
  seed: 1,
  faultyMs: 3_000,
  operationsPerClient: 1,
  faults: { drop: 1, duplicate: 0, minDelayMs: 1, maxDelayMs: 3, longDelay: 0 },
  disk: CALM_DISK,
  partitions: false,
  crashes: false,
  storageFailures: false,
  snapshots: false,
};

const outcome = (o: Partial<SeedOutcome> = {}): SeedOutcome => ({
  writesAcknowledged: 3,
  writesUnknown: 1,
  writesApplied: 4,
  schedulePlayed: false,
  finalVoters: ['n1', 'n2', 'n3'],
  ...o,
});

describe('the verdict on a seed', () => {
  it('fails a seed whose clients gave writes up and had none acknowledged, even if some applied', () => {
    const stalled = outcome({ writesAcknowledged: 0, writesUnknown: 2, writesApplied: 1 });
    expect(seedVerdict({ progress: 'acknowledged' }, stalled)).toMatch(
      /made no progress.*gave up 2 writes and none was acknowledged$/,
    );
    expect(seedVerdict({ progress: 'acknowledged' }, outcome())).toBeUndefined();
    // Where the plan crashes every leader found in C_old,new, or no write was made at all.
    expect(seedVerdict({ progress: 'none' }, stalled)).toBeUndefined();
    expect(
      seedVerdict(
        { progress: 'acknowledged' },
        outcome({ writesAcknowledged: 0, writesUnknown: 0, writesApplied: 0 }),
      ),
    ).toBeUndefined();
  });

  it('under leader churn, passes a seed whose writes were applied though none was acknowledged, and fails one with none applied either', () => {
    const unanswered = outcome({ writesAcknowledged: 0, writesUnknown: 14, writesApplied: 4 });
    expect(seedVerdict({ progress: 'applied' }, unanswered)).toBeUndefined();
    const stalled = outcome({ writesAcknowledged: 0, writesUnknown: 14, writesApplied: 0 });
    expect(seedVerdict({ progress: 'applied' }, stalled)).toBe(
      'the seed made no progress: its clients gave up 14 writes and none was acknowledged or applied',
    );
    expect(
      seedVerdict({ progress: 'applied' }, outcome({ writesApplied: 0, writesUnknown: 1 })),
    ).toBeUndefined();
  });

  it('fails a seed that did not play its schedule to the end', () => {
    const expectations = { progress: 'acknowledged' as const, schedule: 'the Figure 8 schedule' };
    expect(seedVerdict(expectations, outcome())).toBe(
      'the seed did not play the Figure 8 schedule to its end',
    );
    expect(seedVerdict(expectations, outcome({ schedulePlayed: true }))).toBeUndefined();
  });

  it("fails a seed whose final voters are not its membership plan's end", () => {
    const servers = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
    const replaceAll = {
      progress: 'acknowledged' as const,
      finalVoters: new MembershipPlanRun('replace-all-joint', servers).end,
    };
    expect(seedVerdict(replaceAll, outcome({ finalVoters: ['n4', 'n5', 'n6'] }))).toBeUndefined();
    expect(seedVerdict(replaceAll, outcome({ finalVoters: ['n1', 'n5', 'n6'] }))).toBe(
      'the seed ended with the voters n1,n5,n6, not the spares, every original replaced',
    );
    const grow = {
      progress: 'acknowledged' as const,
      finalVoters: new MembershipPlanRun('grow', servers).end,
    };
    expect(
      seedVerdict(grow, outcome({ finalVoters: ['n1', 'n2', 'n3', 'n4', 'n5'] })),
    ).toBeUndefined();
    expect(seedVerdict(grow, outcome({ finalVoters: ['n1', 'n2', 'n3', 'n4'] }))).toMatch(
      /not 5 voters/,
    );
  });

  it('runSimulation applies it: a seed that made no progress fails with its replay command', async () => {
    const failure = runSimulation(NO_PROGRESS);
    await expect(failure).rejects.toThrow(/seed 1 failed .*made no progress/);
    await expect(failure).rejects.toThrow(
      /replay: \.\/dev --filter @tsraft\/core sim --seed 1 --options/,
    );
  });

  it('the sim script replays that seed as a failure, as the test batch judges it', async () => {
    const { seed, ...options } = NO_PROGRESS;
    const replay = run(
      process.execPath,
      [
        '--conditions=@tsraft/source',
        'scripts/sim.ts',
        '--seed',
        String(seed),
        '--options',
        JSON.stringify(options),
      ],
      { cwd: packageRoot },
    );
    await expect(replay).rejects.toMatchObject({
      code: 1,
      stdout: expect.stringMatching(/made no progress[\s\S]*0 passed, 1 failed/),
    });
  });
});
