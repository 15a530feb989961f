import { describe, expect, it } from 'vitest';
import { runSimulation, type SimulationReport } from './simulator.ts';

/**
 * Randomized simulations: safety invariants after every event, convergence after healing,
 * acknowledged writes applied everywhere, linearizable client histories. The batch is bounded
 * in time; `TSRAFT_SIM_SEEDS` sets how many seeds each scenario runs, `TSRAFT_SIM_SEED` runs one.
 */
const seedCount = Number(process.env.TSRAFT_SIM_SEEDS ?? 6);
const firstSeed = Number(process.env.TSRAFT_SIM_SEED ?? 1);
const seeds = Array.from(
  { length: process.env.TSRAFT_SIM_SEED ? 1 : seedCount },
  (_, i) => firstSeed + i,
);

function expectProgress(report: SimulationReport): void {
  expect(report.writesAcknowledged).toBeGreaterThan(0);
  expect(report.readsCompleted).toBeGreaterThan(0);
}

describe('simulation: 3 nodes, lossy network, partitions, crash-restart', () => {
  it.each(seeds)('seed %i keeps every invariant and a linearizable history', async (seed) => {
    const report = await runSimulation({ seed, nodes: 3 });
    expectProgress(report);
  });
});

describe('simulation: 5 nodes, lossy network, partitions, crash-restart', () => {
  it.each(seeds)('seed %i keeps every invariant and a linearizable history', async (seed) => {
    const report = await runSimulation({ seed: seed + 1_000, nodes: 5 });
    expectProgress(report);
  });
});

describe('simulation without PreVote and CheckQuorum', () => {
  it.each(seeds.slice(0, 3))('seed %i keeps every invariant', async (seed) => {
    const report = await runSimulation({
      seed: seed + 2_000,
      nodes: 3,
      tuning: { preVote: false, checkQuorum: false },
    });
    expectProgress(report);
  });
});

describe('simulation determinism', () => {
  it('replays a seed exactly', async () => {
    const a = await runSimulation({ seed: 42, nodes: 3, operationsPerClient: 15 });
    const b = await runSimulation({ seed: 42, nodes: 3, operationsPerClient: 15 });
    expect(b).toEqual(a);
    expect(a.events).toBeGreaterThan(100);
  });
});
