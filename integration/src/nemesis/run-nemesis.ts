import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { type RandomSource, randomInt, seededRandom } from '@tsraft/core';
import type { PostgresProvider } from '@tsraft/testing';
import {
  type AppliedWrites,
  checkAppliedWrites,
  checkLinearizable,
  checkReplicas,
  type LinearizabilityVerdict,
} from './checks.ts';
import { awaitQuiescence, awaitRecovery, type Recovery, waitForLeader } from './cluster-health.ts';
import { isWrite, type RecordedOperation } from './history.ts';
import { NemesisCluster } from './nemesis-cluster.ts';
import type { NemesisAudit } from './node/nemesis-app.ts';
import type { NodeLine } from './node-process.ts';
import { type FaultContext, type FaultReport, pick, type Scenario, shuffle } from './scenario.ts';
import { Workload } from './workload.ts';

/** Options of {@link runNemesis}. */
export interface NemesisOptions {
  /** Seeds the schedule: scenarios, targets, hold times, operations. */
  readonly seed: number;
  /** Nodes in the cluster (3 or 5). */
  readonly nodes: number;
  /** The scenarios to mix; those that do not apply to the cluster are left out (with a log line). */
  readonly scenarios: readonly Scenario[];
  /** Start no round after this many ms (the round under way finishes). */
  readonly durationMs?: number;
  /** Or run exactly this many rounds. One of the two is required. */
  readonly rounds?: number;
  readonly postgres: PostgresProvider | 'pglite';
  /** Where the histories, the report and the nodes' logs go. */
  readonly outDir: string;
  /** Logical clients. Default 8. */
  readonly clients?: number;
  /** Keys each round's operations spread over. Default 4. */
  readonly keysPerRound?: number;
  /** Deadline of one client operation. Default 2,000 ms. */
  readonly opTimeoutMs?: number;
  /** Range of the time a fault is held, in ms. Default [2,000, 6,000]. */
  readonly holdMs?: readonly [number, number];
  /** Every node must have caught up this long after a heal. Default 30,000 ms. */
  readonly catchUpBoundMs?: number;
  /** Chance that a snapshot is taken on some node halfway through a fault. Default 0.5. */
  readonly snapshotChance?: number;
  /** Progress lines. Default: none. */
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** The numbers of one round's operations. */
interface OperationCounts {
  readonly total: number;
  readonly ok: number;
  readonly failed: number;
  readonly unknown: number;
}

/** One round: one fault, its recovery and its checks. */
export interface RoundReport {
  readonly round: number;
  readonly scenario: string;
  readonly detail: string;
  readonly targets: readonly string[];
  /** Milliseconds since the run started. */
  readonly startedAt: number;
  readonly healedAt: number;
  readonly endedAt: number;
  readonly operations: OperationCounts;
  /** Elections won during the round. */
  readonly leaderChanges: number;
  /**
   * From the injection of the fault to the first election won after it (by the nodes' clocks),
   * `null` when no election followed (the fault spared the leader).
   */
  readonly electedAfterMs: number | null;
  /** Nodes that stopped on a fatal error during the round (their supervisor restarted them). */
  readonly fatalStops: number;
  /** `null` when the cluster did not recover within the bound (see `problems`). */
  readonly recovery: Recovery | null;
  /** The snapshot taken halfway through the fault, if one was. */
  readonly snapshot: string | null;
  /**
   * How starved the machine was, to tell a slow recovery from a stuck one: the 1-minute load
   * average at the end of the round, and the longest the harness' own event loop was held up
   * during the round (ms). A loaded machine delays the nodes' ticks and heartbeats alike.
   */
  readonly load: { readonly average: number; readonly harnessLagMaxMs: number };
  readonly linearizability: LinearizabilityVerdict;
  /** Everything the checks found; empty when the round passed. */
  readonly problems: readonly string[];
  readonly ok: boolean;
}

/** The outcome of a run. */
export interface NemesisReport {
  readonly seed: number;
  readonly nodes: number;
  readonly postgres: string;
  readonly outDir: string;
  readonly durationMs: number;
  readonly catchUpBoundMs: number;
  readonly rounds: readonly RoundReport[];
  /** The checks over the whole run once it ended: exactly-once and equal replicas. */
  readonly finalProblems: readonly string[];
  readonly ok: boolean;
}

/** How long the cluster may take to settle (all applied, one leader) before a round's audit. */
const QUIESCENCE_TIMEOUT_MS = 30_000;
/** Time with calm before each fault and after each recovery, with the clients running. */
const CALM_MS = 500;
/** The linearizability checker's time limit per round. */
const CHECK_TIMEOUT_MS = 60_000;
/**
 * How long the cluster may take to settle after the last round: longer than between rounds, since
 * nothing waits on it, and without it the whole-run checks cannot run.
 */
const FINAL_QUIESCENCE_TIMEOUT_MS = 120_000;
/** Rounds per audit query in the final check. */
const FINAL_AUDIT_ROUNDS = 50;

/**
 * Runs a nemesis: a cluster of node processes, clients recording every operation, and rounds of
 * faults from `scenarios` (each cycle through them in a seeded order). Each round injects and
 * holds a fault, heals it, measures the recovery, lets the clients run a little, pauses them,
 * waits for the cluster to settle, and checks the round: its history is linearizable, its
 * acknowledged writes are applied exactly once on every node, the replicated tables are equal.
 * After the last round the whole run is checked again. Writes `history.jsonl`, `rounds.jsonl`,
 * `report.json`, `run.log` and `nodes/<id>.log` to `outDir`.
 */
export async function runNemesis(options: NemesisOptions): Promise<NemesisReport> {
  if (options.durationMs === undefined && options.rounds === undefined) {
    throw new TypeError('runNemesis needs durationMs or rounds');
  }
  if (options.scenarios.length === 0) throw new TypeError('runNemesis needs at least one scenario');
  const { signal } = options;
  const random = seededRandom(options.seed);
  const catchUpBoundMs = options.catchUpBoundMs ?? 30_000;
  const [holdMin, holdMax] = options.holdMs ?? [2_000, 6_000];
  const snapshotChance = options.snapshotChance ?? 0.5;
  const log = options.log ?? (() => {});
  await mkdir(options.outDir, { recursive: true });
  await using files = new RunFiles(options.outDir);
  const started = performance.now();
  const now = (): number => performance.now() - started;
  const note = (text: string): void => {
    files.log(`${(now() / 1000).toFixed(3)} ${text}`);
  };

  let roundLines: NodeLine[] = [];
  /** Node processes that crashed this round, and their restarts (as a process manager would). */
  let crashes: string[] = [];
  const restarts = new Set<Promise<void>>();
  const onCrash = ({ id, exit }: { id: string; exit: string }): void => {
    crashes.push(`node ${id} crashed (${exit}); see nodes/${id}.log`);
    note(`node ${id} crashed (${exit}); restarting it`);
    const restart = cluster
      .process(id)
      .start(signal ? { signal } : {})
      .catch((error: unknown) => {
        crashes.push(`node ${id} did not restart after its crash: ${(error as Error).message}`);
      })
      .finally(() => restarts.delete(restart));
    restarts.add(restart);
  };
  await using cluster = await NemesisCluster.start({
    onCrash: (crash) => onCrash(crash),
    nodes: options.nodes,
    postgres: options.postgres,
    outDir: options.outDir,
    onLine: (line) => {
      if (line.event !== undefined || line.msg === 'installed a snapshot') roundLines.push(line);
    },
    ...(signal ? { signal } : {}),
  });
  const applicable = options.scenarios.filter((scenario) => scenario.appliesTo(cluster));
  const left = options.scenarios.filter((scenario) => !applicable.includes(scenario));
  if (left.length > 0) {
    log(
      `[nemesis] leaving out ${left.map((scenario) => scenario.name).join(', ')}: not for a cluster on ${describePostgres(options.postgres)}`,
    );
  }
  if (applicable.length === 0) throw new Error('none of the scenarios applies to this cluster');
  note(`cluster of ${options.nodes} started (${describePostgres(options.postgres)})`);
  await waitForLeader(cluster, { timeoutMs: 30_000, ...(signal ? { signal } : {}) });

  const history: RecordedOperation[] = [];
  const workload = new Workload({
    nodes: cluster.appUrls(),
    clients: options.clients ?? 8,
    keysPerRound: options.keysPerRound ?? 4,
    opTimeoutMs: options.opTimeoutMs ?? 2_000,
    random: seededRandom(randomInt(random, 0, 2 ** 31)),
    runId: `nemesis-${options.seed}-${Date.now().toString(36)}`,
    now,
    record: (op) => {
      history.push(op);
      files.history(op);
    },
  });

  const rounds: RoundReport[] = [];
  const schedule = cycle(random, applicable);
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  try {
    for (let round = 1; ; round++) {
      if (options.rounds !== undefined && round > options.rounds) break;
      if (options.durationMs !== undefined && now() > options.durationMs) break;
      signal?.throwIfAborted();
      const scenario = schedule.next().value as Scenario;
      roundLines = [];
      crashes = [];
      lag.reset();
      const startedAt = now();
      workload.start(round);
      await sleep(CALM_MS, undefined, { signal });
      let snapshot: string | null = null;
      let injectedAt: number | undefined;
      const context: FaultContext = {
        cluster,
        random,
        signal: signal ?? new AbortController().signal,
        leader: async () =>
          (await waitForLeader(cluster, { timeoutMs: 15_000, ...(signal ? { signal } : {}) })).id,
        hold: async ({ minMs = 0 } = {}) => {
          const holdFor = Math.max(minMs, randomInt(random, holdMin, holdMax + 1));
          if (random.next() >= snapshotChance) {
            await sleep(holdFor, undefined, { signal });
            return;
          }
          await sleep(holdFor / 2, undefined, { signal });
          const on = pick(random, cluster.ids);
          const taking = takeSnapshot(cluster, on).then((outcome) => {
            snapshot = `${on}: ${outcome}`;
            note(`snapshot on ${on}: ${outcome}`);
          });
          await sleep(holdFor / 2, undefined, { signal });
          await taking;
        },
        note: (text) => {
          injectedAt ??= Date.now();
          note(`round ${round} ${scenario.name}: ${text}`);
        },
        nodeLines: () => roundLines,
      };
      const problems: string[] = [];
      let fault: FaultReport = { targets: [], detail: '(did not run)' };
      try {
        fault = await scenario.run(context);
      } catch (error) {
        if (signal?.aborted) throw error;
        problems.push(`the fault failed: ${(error as Error).message}`);
        await cluster.healAll(signal ? { signal } : {}).catch((heal: unknown) => {
          problems.push(`healing after it failed too: ${(heal as Error).message}`);
        });
      }
      await Promise.all(restarts);
      const healedAt = now();
      const recovered = await awaitRecovery(cluster, {
        healedAt: performance.now(),
        boundMs: catchUpBoundMs,
        ...(signal ? { signal } : {}),
      });
      const recovery = 'stuck' in recovered ? null : recovered;
      if ('stuck' in recovered) problems.push(recovered.stuck);
      await sleep(CALM_MS, undefined, { signal });
      await workload.pause();

      const settled = await awaitQuiescence(cluster, {
        timeoutMs: QUIESCENCE_TIMEOUT_MS,
        ...(signal ? { signal } : {}),
      });
      const ops = history.filter((op) => op.round === round);
      if ('problem' in settled) {
        problems.push(settled.problem);
      } else {
        const audits = await auditAll(cluster, [round]);
        problems.push(...checkReplicas(audits));
        problems.push(...checkAppliedWrites(ops.filter(isWrite), appliedWritesOf(audits)));
      }
      if (fault.verify !== undefined) problems.push(...(await fault.verify()));
      problems.push(...crashes);
      const linearizability = checkLinearizable(ops, { timeoutMs: CHECK_TIMEOUT_MS });
      if (linearizability.verdict !== 'ok') {
        problems.push(
          `history ${linearizability.verdict === 'illegal' ? 'not linearizable' : 'undecided'}: ${linearizability.message}`,
        );
      }
      const elections = roundLines.filter(
        (line) => line.event === 'role' && line.role === 'leader',
      );
      const report: RoundReport = {
        round,
        scenario: scenario.name,
        detail: fault.detail,
        targets: fault.targets,
        startedAt,
        healedAt,
        endedAt: now(),
        operations: countOutcomes(ops),
        leaderChanges: elections.length,
        electedAfterMs: electedAfter(elections, injectedAt),
        fatalStops: roundLines.filter((line) => line.event === 'fatal').length,
        recovery,
        snapshot,
        load: {
          average: Math.round((loadavg()[0] ?? 0) * 10) / 10,
          harnessLagMaxMs: Math.round(lag.max / 1e6),
        },
        linearizability,
        problems,
        ok: problems.length === 0,
      };
      rounds.push(report);
      files.round(report);
      log(describeRound(report));
    }

    const finalProblems = await checkWholeRun(cluster, history, rounds.length, signal);
    const report: NemesisReport = {
      seed: options.seed,
      nodes: options.nodes,
      postgres: describePostgres(options.postgres),
      outDir: options.outDir,
      durationMs: now(),
      catchUpBoundMs,
      rounds,
      finalProblems,
      ok: finalProblems.length === 0 && rounds.every((round) => round.ok),
    };
    await writeFile(join(options.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    lag.disable();
    await workload.pause();
  }
}

/** Each scenario once per cycle, in a new seeded order each cycle. */
function* cycle(random: RandomSource, scenarios: readonly Scenario[]): Generator<Scenario> {
  for (;;) yield* shuffle(random, scenarios);
}

async function takeSnapshot(cluster: NemesisCluster, id: string): Promise<string> {
  try {
    const taken = await cluster
      .admin(id)
      .admin.snapshot.mutate(undefined, { signal: AbortSignal.timeout(10_000) });
    return taken === null ? 'nothing new to snapshot' : `index ${taken.index}`;
  } catch (error) {
    return `failed (${(error as Error).message})`;
  }
}

/**
 * Audits every node (see `NemesisAudit`) for the writes of `rounds`; audits again, a few times,
 * while a node applied something during its audit or the nodes' applied indexes differ (a late
 * entry still arriving).
 */
async function auditAll(
  cluster: NemesisCluster,
  rounds: readonly number[],
): Promise<Map<string, NemesisAudit>> {
  let audits = new Map<string, NemesisAudit>();
  for (let attempt = 1; attempt <= 5; attempt++) {
    audits = new Map();
    for (const id of cluster.ids) {
      try {
        audits.set(
          id,
          await cluster
            .admin(id)
            .admin.audit.query({ rounds: [...rounds] }, { signal: AbortSignal.timeout(30_000) }),
        );
      } catch {
        // Left out: checkReplicas reports a node missing from the audits as behind.
      }
    }
    const indexes = new Set([...audits.values()].map((audit) => audit.appliedIndex));
    const steady = [...audits.values()].every((a) => a.appliedIndex === a.appliedIndexAfter);
    if (audits.size === cluster.ids.length && indexes.size === 1 && steady) return audits;
    await sleep(200);
  }
  return audits;
}

function appliedWritesOf(audits: ReadonlyMap<string, NemesisAudit>): Map<string, AppliedWrites> {
  return new Map(
    [...audits].map(([id, audit]) => [
      id,
      new Map(audit.writes.map(({ writeId, count }) => [writeId, count])),
    ]),
  );
}

/** After the last round: the cluster settles, then exactly-once over every round, equal replicas. */
async function checkWholeRun(
  cluster: NemesisCluster,
  history: readonly RecordedOperation[],
  rounds: number,
  signal: AbortSignal | undefined,
): Promise<string[]> {
  const settled = await awaitQuiescence(cluster, {
    timeoutMs: FINAL_QUIESCENCE_TIMEOUT_MS,
    ...(signal ? { signal } : {}),
  });
  if ('problem' in settled) return [`at the end: ${settled.problem}`];
  const applied = new Map<string, Map<string, number>>(cluster.ids.map((id) => [id, new Map()]));
  let lastAudits = new Map<string, NemesisAudit>();
  for (let first = 1; first <= Math.max(rounds, 1); first += FINAL_AUDIT_ROUNDS) {
    const chunk = Array.from(
      { length: Math.min(FINAL_AUDIT_ROUNDS, rounds - first + 1) },
      (_, i) => first + i,
    );
    lastAudits = await auditAll(cluster, chunk);
    for (const [id, writes] of appliedWritesOf(lastAudits)) {
      for (const [writeId, count] of writes) applied.get(id)?.set(writeId, count);
    }
  }
  return [
    ...checkReplicas(lastAudits),
    ...checkAppliedWrites(history.filter(isWrite), applied),
  ].map((problem) => `at the end: ${problem}`);
}

function electedAfter(
  elections: readonly NodeLine[],
  injectedAt: number | undefined,
): number | null {
  if (injectedAt === undefined) return null;
  const after = elections.map((line) => line.t - injectedAt).filter((ms) => ms >= 0);
  return after.length === 0 ? null : Math.min(...after);
}

function countOutcomes(ops: readonly RecordedOperation[]): OperationCounts {
  let ok = 0;
  let failed = 0;
  let unknown = 0;
  for (const op of ops) {
    if (op.outcome === 'ok') ok++;
    else if (op.outcome === 'failed') failed++;
    else unknown++;
  }
  return { total: ops.length, ok, failed, unknown };
}

function describePostgres(postgres: PostgresProvider | 'pglite'): string {
  return postgres === 'pglite' ? 'PGlite in each node' : `${postgres.name} Postgres per node`;
}

/** One progress line per round. */
function describeRound(report: RoundReport): string {
  const { operations: ops, recovery } = report;
  return (
    `[nemesis] round ${report.round} ${report.scenario}: ${report.detail} · ` +
    `${ops.total} ops (${ops.ok} ok, ${ops.failed} failed, ${ops.unknown} unknown) · ` +
    `${report.leaderChanges} leader changes` +
    (report.electedAfterMs === null ? '' : ` (first ${report.electedAfterMs} ms after the fault)`) +
    ' · ' +
    (recovery === null
      ? 'did not recover'
      : `leader after ${Math.round(recovery.leaderMs)} ms, caught up after ${Math.round(recovery.caughtUpMs)} ms`) +
    ` · load ${report.load.average}, harness lag max ${report.load.harnessLagMaxMs} ms` +
    ` · ${report.ok ? 'ok' : `FAILED: ${report.problems.join('; ')}`}`
  );
}

/** The run's files, written as the run goes. */
class RunFiles implements AsyncDisposable {
  readonly #history: WriteStream;
  readonly #rounds: WriteStream;
  readonly #log: WriteStream;

  constructor(outDir: string) {
    this.#history = createWriteStream(join(outDir, 'history.jsonl'));
    this.#rounds = createWriteStream(join(outDir, 'rounds.jsonl'));
    this.#log = createWriteStream(join(outDir, 'run.log'));
  }

  history(op: RecordedOperation): void {
    this.#history.write(`${JSON.stringify(op)}\n`);
  }

  round(report: RoundReport): void {
    this.#rounds.write(`${JSON.stringify(report)}\n`);
  }

  log(line: string): void {
    this.#log.write(`${line}\n`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(
      [this.#history, this.#rounds, this.#log].map(
        (stream) => new Promise<void>((resolve) => stream.end(resolve)),
      ),
    );
  }
}
