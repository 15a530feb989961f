import { type ClusterConfig, isJoint, members } from '../../configuration.ts';
import type { EngineTuning } from '../../engine/engine-options.ts';
import { hasQuorum } from '../../engine/quorum.ts';
import type { RaftEngine } from '../../engine/raft-engine.ts';
import { CommandError, NotLeaderError } from '../../errors.ts';
import type { NodeId } from '../../log-entry.ts';
import type { LogFn, Logger } from '../../logger.ts';
import type { InstallSnapshot, Message } from '../../message.ts';
import { type RandomSource, randomInt, seededRandom } from '../../random.ts';
import { engineOf, type RaftNode } from '../../runtime/raft-node.ts';
import { RaftSupervisor } from '../../runtime/raft-supervisor.ts';
import type { SupervisedNodeOptions } from '../../runtime/raft-supervisor-options.ts';
import type { AppliedEntry } from '../../state-machine.ts';
import type { KvCommand, KvResult } from '../kv-state-machine.ts';
import { checkOperations } from '../linearizability/checker.ts';
import { type KvInput, type KvOutput, kvModel } from '../linearizability/kv-model.ts';
import { type Operation, UNKNOWN_OUTCOME } from '../linearizability/operation.ts';
import { type Figure8Cluster, Figure8Schedule } from './figure-8-schedule.ts';
import {
  type InstallDuringApplyCluster,
  InstallDuringApplySchedule,
} from './install-during-apply-schedule.ts';
import { InvariantChecker, InvariantViolation } from './invariant-checker.ts';
import { pickMembershipAction } from './membership-actions.ts';
import { type MembershipPlanName, MembershipPlanRun, planServers } from './membership-plans.ts';
import { type SeedExpectations, seedVerdict } from './seed-verdict.ts';
import { CALM_NETWORK, type NetworkFaults, SimNetwork } from './sim-network.ts';
import {
  CALM_DISK,
  type DiskCounters,
  type DiskFaults,
  InjectedStorageFault,
  SimDisk,
  SimProcess,
} from './sim-process.ts';
import { SimLogStore, SimSnapshotStore, SimStateMachine } from './sim-stores.ts';
import { SimSwitchboard, SimTransport } from './sim-transport.ts';
import { VirtualTime } from './virtual-time.ts';

/** What to simulate. Everything random is drawn from `seed`. */
export interface SimulationOptions {
  readonly seed: number;
  /** Number of voters. Default 3, or the voters of the `membership` plan. */
  readonly nodes?: number;
  /** Simulated clients, each running one operation at a time. Default 4. */
  readonly clients?: number;
  /** Operations each client performs. Default 40. */
  readonly operationsPerClient?: number;
  /** Virtual time with faults, in ms; then every fault heals and the cluster must converge. Default 8,000. */
  readonly faultyMs?: number;
  /** Network faults during the faulty phase. Default: lossy, duplicating, reordering. */
  readonly faults?: NetworkFaults;
  /** Disk latency, stalls, failures and crash points during the faulty phase. Default {@link FAULTY_DISK}. */
  readonly disk?: DiskFaults;
  /** Inject partitions (also one-way) during the faulty phase. Default true. */
  readonly partitions?: boolean;
  /**
   * Crash processes during the faulty phase: at random times, inside storage calls (crash
   * points), and during a graceful `close()`; each comes back later on its durable state.
   * Default true.
   */
  readonly crashes?: boolean;
  /**
   * Leader churn, to provoke Raft paper Figure 8 and stale reads: every few dozen ms of the
   * faulty phase the leader crashes, restarts, or is cut off from everyone (a deposed leader
   * that does not know it yet), or the network heals; a new leader is often cut short within a
   * few round trips; crashed processes come back at once. Default false.
   */
  readonly leaderChurn?: boolean;
  /** Storage calls fail (the node stops, its supervisor restarts it). Default true. */
  readonly storageFailures?: boolean;
  /** Nodes take snapshots (and compact their logs) at random times. Default true. */
  readonly snapshots?: boolean;
  /**
   * During the faulty phase an operator changes the membership every few hundred ms (grow,
   * shrink, replace one or all voters, demote, remove the leader; one step or joint) and
   * transfers leadership; two spare servers start outside the configuration. At the end the
   * members of the final configuration must hold every acknowledged write. Default false.
   *
   * A plan's name instead runs that scripted workload (`MEMBERSHIP_PLANS`: grow, shrink, replace
   * one by one, replace all through joint consensus, remove the leader) under the same faults,
   * asking the leader for each step again until it is committed; the run converges only once
   * the whole plan is done, faults healed or not.
   */
  readonly membership?: boolean | MembershipPlanName;
  /**
   * With a `membership` plan: while faults last, the leader crashes (and restarts later) half of
   * the times it is found between a joint configuration C_old,new and C_new. Default false.
   */
  readonly crashInJoint?: boolean;
  /**
   * Instead of random faults, five servers play the Raft paper's Figure 8 by partitions (see
   * {@link Figure8Schedule}); no clients but the schedule's one write, a calm network and disk,
   * one entry per AppendEntries (unless `tuning` says otherwise). Default false.
   */
  readonly figure8?: boolean;
  /**
   * Instead of random faults, three servers play {@link InstallDuringApplySchedule}: `close()`
   * meets a follower's snapshot install while its apply loop is busy. No clients but the
   * schedule's writes, a calm network and disk. Default false.
   */
  readonly installDuringApply?: boolean;
  /**
   * Once during the faulty phase, a follower's disk dies (one whose incarnation every other
   * server's disk holds: a loss before that is a known limit, core README "Node identity"): its
   * process is killed and comes back on an empty disk, in a new incarnation, which the others
   * refuse. An operator then follows the replacement runbook: removes it on the leader and
   * adds it back as a learner that is promoted; the run converges only once it is a voter
   * again. Not with `membership` or `figure8`. Default false.
   */
  readonly loseDisk?: boolean;
  readonly tuning?: Partial<EngineTuning>;
  /** Receives the nodes' log lines (info and above), stamped with virtual time. Default: none. */
  readonly log?: (line: string) => void;
}

/** What a simulation did; every number is a count over the whole run. */
export interface SimulationReport {
  readonly seed: number;
  readonly events: number;
  readonly virtualMs: number;
  readonly leaderTerms: number;
  readonly writesAcknowledged: number;
  readonly writesUnknown: number;
  /**
   * Distinct client writes (by session stamp) that a state machine applied: committed, whether
   * or not their client heard (acknowledged, given up, or answered by a retry).
   */
  readonly writesApplied: number;
  readonly readsCompleted: number;
  /** Processes that died (killed, crashed at a crash point, or during `close()`). */
  readonly crashes: number;
  /** Crashes that hit a process with a storage call in flight (at a crash point or not). */
  readonly crashesInFlight: number;
  /** Graceful restarts (`close()`, then a new process), some crashing half-way. */
  readonly closes: number;
  readonly partitions: number;
  /** Storage calls that failed, and the restarts of stopped nodes by their supervisors. */
  readonly storageFailures: number;
  readonly supervisorRestarts: number;
  /** Storage calls slower than usual (a stalled disk). */
  readonly slowStorageCalls: number;
  readonly snapshotsTaken: number;
  readonly snapshotsInstalled: number;
  /** Membership changes asked of a leader, and leadership transfers it started. */
  readonly membershipChanges: number;
  readonly transfers: number;
  /** Leaders crashed between C_old,new and C_new (`crashInJoint`). */
  readonly crashesInJoint: number;
  /** The voters of the final configuration, sorted. */
  readonly finalVoters: readonly NodeId[];
  /** With `figure8` or `installDuringApply`: whether the schedule was played to its end. */
  readonly schedulePlayed: boolean;
  /** With `loseDisk`: disks lost (0 or 1), and refusals of a peer's identity the nodes emitted. */
  readonly disksLost: number;
  readonly identityRefusals: number;
}

/** A simulation found a bug. `seed` replays it exactly. */
export class SimulationFailure extends Error {
  override name = 'SimulationFailure';
  readonly seed: number;
  constructor(options: SimulationOptions, virtualMs: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const { seed, ...rest } = options;
    const extra = Object.keys(rest).length === 0 ? '' : ` --options '${JSON.stringify(rest)}'`;
    super(
      `simulation seed ${seed} failed at virtual time ${virtualMs} ms: ${reason}\n` +
        `replay: ./dev --filter @tsraft/core sim --seed ${seed}${extra}`,
      { cause },
    );
    this.seed = seed;
  }
}

export const LOSSY_NETWORK: NetworkFaults = Object.freeze({
  drop: 0.05,
  duplicate: 0.03,
  minDelayMs: 1,
  maxDelayMs: 12,
  longDelay: 0.02,
});

/** Disk latency of a few ms, occasional stalls, rare failures and crash points. */
export const FAULTY_DISK: DiskFaults = Object.freeze({
  minLatencyMs: 0,
  maxLatencyMs: 3,
  slow: 0.01,
  slowMs: 500,
  fail: 0.002,
  crash: 0.002,
});

/** Tiny AppendEntries and windows: replication interleaves in many more ways. */
export const SMALL_BATCHES: Partial<EngineTuning> = Object.freeze({
  maxEntriesPerMessage: 2,
  maxInflightMessages: 2,
});

const TICK_MS = 10;
const ATTEMPT_TIMEOUT_MS = 400;
const OPERATION_TIMEOUT_MS = 1_500;
const CONVERGE_MS = 5_000;
const KEYS = ['x', 'y', 'z'];

interface PendingOperation {
  readonly input: KvInput;
  readonly command: KvCommand;
  readonly call: number;
  readonly session: { clientId: string; seq: number } | undefined;
  attempt: number;
}

interface SimClient {
  readonly id: number;
  readonly name: string;
  seq: number;
  remaining: number;
  op: PendingOperation | undefined;
  leaderHint: NodeId | undefined;
}

/** A server: its durable disk, and the process running on it now (none while down). */
interface Server {
  readonly id: NodeId;
  /** Replaced by an empty one when the disk dies (`loseDisk`). */
  disk: SimDisk;
  process: SimProcess | undefined;
  supervisor: RaftSupervisor<KvCommand, KvResult> | undefined;
  /** The node last seen running on it, to notice a new life. */
  node: RaftNode<KvCommand, KvResult> | undefined;
}

/**
 * Runs a cluster of real {@link RaftNode}s, each under a {@link RaftSupervisor}, on virtual time:
 * simulated stores (latency, stalls, failures, crash points inside storage calls), a simulated
 * network (loss, duplication, reordering, partitions), process crashes and graceful restarts,
 * snapshots at random times, clients writing with sessions and reading linearizably through any
 * node. After every event the {@link InvariantChecker} checks Raft's safety properties on every
 * running engine; at the end every fault heals, the cluster must converge, its members must hold
 * the same state, and the clients' history (with a final read of every key) must be
 * linearizable. A node that stops on an error the simulation did not inject fails the run, and
 * so does a seed that does not show what its options promise ({@link seedVerdict}: progress, a
 * schedule played whole, a plan's final voters), here rather than in each caller, so that a seed
 * fails alike in the test batch and in `sim --seed N`.
 * Deterministic: one seed, one run. Throws {@link SimulationFailure} (carrying the seed).
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationReport> {
  const sim = new Simulation(options);
  try {
    return await sim.run();
  } catch (error) {
    throw new SimulationFailure(options, sim.now, error);
  } finally {
    sim.dispose();
  }
}

class Simulation {
  readonly #options: Required<Omit<SimulationOptions, 'tuning' | 'log'>> & {
    tuning?: Partial<EngineTuning>;
    log?: (line: string) => void;
  };
  readonly #random: RandomSource;
  readonly #time = new VirtualTime();
  readonly #network: SimNetwork;
  readonly #switchboard: SimSwitchboard;
  readonly #servers: Server[];
  readonly #voters: NodeId[];
  readonly #clients: SimClient[];
  readonly #checker = new InvariantChecker();
  readonly #history: Operation<KvInput, KvOutput>[] = [];
  readonly #disk: DiskCounters = { calls: 0, failures: 0, crashes: 0, slow: 0 };
  #failure: Error | undefined;
  #events = 0;
  #faultsOn = true;
  #leaderTerms = new Set<number>();
  #writesAcknowledged = 0;
  #writesUnknown = 0;
  /** The session stamps (`clientId#seq`) of the client writes applied anywhere. */
  readonly #writesApplied = new Set<string>();
  #readsCompleted = 0;
  #crashes = 0;
  #crashesInFlight = 0;
  #closes = 0;
  #partitions = 0;
  #supervisorRestarts = 0;
  #snapshotsTaken = 0;
  #snapshotsInstalled = 0;
  #membershipChanges = 0;
  #transfers = 0;
  #crashesInJoint = 0;
  readonly #plan: MembershipPlanRun | undefined;
  /** A scripted schedule run instead of random faults, if any. */
  readonly #schedule: Figure8Schedule | InstallDuringApplySchedule | undefined;
  /**
   * With `loseDisk`: the server whose disk died, its dead disk (as it was when it died: its
   * process was killed with it), and where the runbook stands.
   */
  #lostDisk:
    | { readonly id: NodeId; readonly disk: SimDisk; step: 'remove' | 'add' | 'done' }
    | undefined;
  /**
   * `leader@term` -> the commit index {@link #checkCommittedDurably} last checked, and the
   * leader's last log index after the previous event.
   */
  readonly #commitChecked = new Map<string, { commitIndex: number; lastIndex: number }>();
  #identityRefusals = 0;

  constructor(options: SimulationOptions) {
    const plan = typeof options.membership === 'string' ? options.membership : undefined;
    if (
      plan !== undefined &&
      options.nodes !== undefined &&
      options.nodes !== planServers(plan).voters
    ) {
      throw new TypeError(
        `the membership plan ${plan} starts with ${planServers(plan).voters} voters; leave \`nodes\` out`,
      );
    }
    if (
      options.loseDisk === true &&
      (options.membership !== undefined ||
        options.figure8 === true ||
        options.installDuringApply === true)
    ) {
      throw new TypeError('loseDisk runs without `membership`, `figure8` and `installDuringApply`');
    }
    if (options.figure8 === true && options.nodes !== undefined && options.nodes !== 5) {
      throw new TypeError('Figure 8 is played on five servers; leave `nodes` out');
    }
    if (options.installDuringApply === true && options.nodes !== undefined && options.nodes !== 3) {
      throw new TypeError(
        'the install during apply schedule runs on three servers; leave `nodes` out',
      );
    }
    const figure8 = options.figure8 === true;
    const installDuringApply = options.installDuringApply === true;
    this.#options = {
      nodes: plan === undefined ? 3 : planServers(plan).voters,
      clients: 4,
      operationsPerClient: 40,
      faultyMs: 8_000,
      faults: LOSSY_NETWORK,
      disk: FAULTY_DISK,
      partitions: true,
      crashes: true,
      storageFailures: true,
      leaderChurn: false,
      snapshots: true,
      membership: false,
      crashInJoint: false,
      figure8: false,
      installDuringApply: false,
      loseDisk: false,
      ...(installDuringApply
        ? {
            nodes: 3,
            clients: 0,
            faultyMs: 3_000,
            faults: CALM_NETWORK,
            disk: CALM_DISK,
            partitions: false,
            crashes: false,
            storageFailures: false,
            snapshots: false,
          }
        : {}),
      ...(figure8
        ? {
            nodes: 5,
            clients: 0,
            faultyMs: 3_000,
            faults: CALM_NETWORK,
            disk: CALM_DISK,
            partitions: false,
            crashes: false,
            storageFailures: false,
            snapshots: false,
            // One entry at a time: the old entry reaches S3 before the leader's own does.
            tuning: { maxEntriesPerMessage: 1, maxInflightMessages: 1 },
          }
        : {}),
      ...options,
    };
    this.#random = seededRandom(options.seed);
    this.#network = new SimNetwork(this.#random, this.#options.faults);
    const diskOf = (id: NodeId): SimDisk | undefined =>
      this.#servers.find((s) => s.id === id)?.disk;
    this.#switchboard = new SimSwitchboard(this.#time, this.#network, {
      sent: (from, messages) => this.#check(() => checkDurableBeforeSent(diskOf(from), messages)),
      snapshotHeld: (from, message) =>
        this.#check(() => checkSnapshotHeldDurably(diskOf(from), message)),
    });
    const spares =
      plan === undefined ? (this.#options.membership ? 2 : 0) : planServers(plan).spares;
    const ids = Array.from({ length: this.#options.nodes + spares }, (_, i) => `n${i + 1}`);
    this.#plan = plan === undefined ? undefined : new MembershipPlanRun(plan, ids);
    this.#schedule = figure8
      ? new Figure8Schedule(this.#figure8Cluster(), { stepMs: 1_000 })
      : installDuringApply
        ? new InstallDuringApplySchedule(this.#installCluster(), { stepMs: 2_000 })
        : undefined;
    this.#voters = ids.slice(0, this.#options.nodes);
    this.#servers = ids.map((id) => ({
      id,
      disk: new SimDisk(id),
      process: undefined,
      supervisor: undefined,
      node: undefined,
    }));
    this.#clients = Array.from({ length: this.#options.clients }, (_, i) => ({
      id: i,
      name: `client-${i}`,
      seq: 0,
      remaining: this.#options.operationsPerClient,
      op: undefined,
      leaderHint: undefined,
    }));
  }

  get now(): number {
    return this.#time.now;
  }

  async run(): Promise<SimulationReport> {
    const time = this.#time;
    for (const server of this.#servers) this.#boot(server);
    for (const client of this.#clients) {
      time.at(randomInt(this.#random, 0, 50), () => this.#clientWake(client));
    }
    if (this.#options.partitions || this.#options.crashes) time.at(300, () => this.#fault());
    if (this.#options.snapshots) time.at(100, () => this.#snapshot());
    const plan = this.#plan;
    if (this.#options.loseDisk) {
      time.at(randomInt(this.#random, 500, this.#options.faultyMs / 2), () => this.#loseDisk());
    }
    if (plan !== undefined) time.at(500, () => this.#followPlan(plan));
    else if (this.#options.membership) time.at(500, () => this.#changeMembership());
    let healed = false;
    time.at(this.#options.faultyMs, () => {
      healed = true;
      this.#heal();
    });
    // With no client or fault due early (Figure 8), the processes would start only once the first
    // timer ran, the heal: let them start now.
    if (this.#schedule !== undefined) await time.settle();
    const deadline = this.#options.faultyMs + CONVERGE_MS + OPERATION_TIMEOUT_MS;
    while (await time.step()) {
      this.#events++;
      this.#throwIfFailed();
      this.#checkInvariants();
      if (this.#faultsOn) this.#schedule?.afterEvent(time.now);
      if (time.now > deadline) break;
      if (healed && this.#quiescent()) break;
    }
    await this.#finalChecks();
    const report: SimulationReport = {
      seed: this.#options.seed,
      events: this.#events,
      virtualMs: time.now,
      leaderTerms: this.#leaderTerms.size,
      writesAcknowledged: this.#writesAcknowledged,
      writesUnknown: this.#writesUnknown,
      writesApplied: this.#writesApplied.size,
      readsCompleted: this.#readsCompleted,
      crashes: this.#crashes,
      crashesInFlight: this.#crashesInFlight,
      closes: this.#closes,
      partitions: this.#partitions,
      storageFailures: this.#disk.failures,
      supervisorRestarts: this.#supervisorRestarts,
      slowStorageCalls: this.#disk.slow,
      snapshotsTaken: this.#snapshotsTaken,
      snapshotsInstalled: this.#snapshotsInstalled,
      membershipChanges: this.#membershipChanges,
      transfers: this.#transfers,
      crashesInJoint: this.#crashesInJoint,
      finalVoters: [...(this.#leader()?.status().config.voters ?? [])].sort(),
      schedulePlayed: this.#schedule?.played ?? false,
      disksLost: this.#lostDisk === undefined ? 0 : 1,
      identityRefusals: this.#identityRefusals,
    };
    const failure = seedVerdict(this.#expectations(), report);
    if (failure !== undefined) throw new Error(failure);
    return report;
  }

  /** What this seed must show once it converged, from its options (see {@link seedVerdict}). */
  #expectations(): SeedExpectations {
    const schedule = this.#options.figure8
      ? 'the Figure 8 schedule'
      : this.#options.installDuringApply
        ? 'the install during apply schedule'
        : undefined;
    const voters = [...this.#voters].sort();
    const finalVoters =
      this.#plan !== undefined
        ? this.#plan.end
        : this.#options.loseDisk
          ? { what: voters.join(','), holds: (v: readonly NodeId[]) => v.join() === voters.join() }
          : undefined;
    return {
      progress: this.#options.crashInJoint
        ? 'none'
        : this.#options.leaderChurn
          ? 'applied'
          : 'acknowledged',
      ...(schedule === undefined ? {} : { schedule }),
      ...(finalVoters === undefined ? {} : { finalVoters }),
    };
  }

  /** Stops every process, so that nothing of this run lingers. */
  dispose(): void {
    for (const server of this.#servers) server.process?.kill();
  }

  /** Runs a check outside the event loop's own (in a transport): a violation fails the run. */
  #check(check: () => void): void {
    try {
      check();
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    this.#failure ??= error instanceof Error ? error : new Error(String(error));
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  // -------------------------------------------------------------------------------------------
  // Servers

  /** Starts a new process on `server`'s disk: a supervisor, which starts a node. */
  #boot(server: Server): void {
    if (server.process !== undefined) return;
    const process = new SimProcess({
      // Wall clocks of different machines disagree by up to a second.
      clock: this.#time.clock(1_700_000_000_000 + randomInt(this.#random, 0, 1_000)),
      random: this.#random,
      faults: this.#diskFaults(),
      counters: this.#disk,
      onCrashPoint: (p) => this.#kill(server, p),
    });
    server.process = process;
    // Clocks drift: each process ticks at its own rate, up to 30% off the nominal one.
    const tickMs = randomInt(this.#random, TICK_MS - 3, TICK_MS + 4);
    RaftSupervisor.start<KvCommand, KvResult>({
      clock: process.clock,
      backoff: { initialMs: 20, maxMs: 400 },
      open: async () => this.#nodeOptions(server, process, tickMs),
    }).then(
      (supervisor) => {
        if (!process.alive) return;
        server.supervisor = supervisor;
        supervisor.on('fatal', ({ error }) => {
          this.#nodeStopped(server, error);
          // Sometimes the process dies while its supervisor restarts the node.
          if (this.#options.crashes && this.#faultsOn && this.#random.next() < 0.3) {
            this.#time.at(randomInt(this.#random, 0, 60), () => {
              if (this.#faultsOn) this.#kill(server, process);
            });
          }
        });
        supervisor.on('recovered', () => this.#supervisorRestarts++);
      },
      (error: unknown) => {
        if (!process.alive) return;
        // A first start is not retried by the supervisor: the operator starts the process again.
        this.#nodeStopped(server, error);
        this.#exit(server, process);
        this.#restartLater(server);
      },
    );
  }

  #diskFaults(): DiskFaults {
    if (!this.#faultsOn) return CALM_DISK;
    const disk = this.#options.disk;
    return {
      ...disk,
      fail: this.#options.storageFailures ? disk.fail : 0,
      crash: this.#options.crashes ? disk.crash : 0,
    };
  }

  #nodeOptions(
    server: Server,
    process: SimProcess,
    tickMs: number,
  ): SupervisedNodeOptions<KvCommand, KvResult> {
    return {
      id: server.id,
      config: { voters: this.#voters },
      logStore: new SimLogStore(server.disk, process),
      stateMachine: new SimStateMachine(server.disk, process, (entries) =>
        this.#applied(server, entries),
      ),
      snapshotStore: new SimSnapshotStore(server.disk, process, () =>
        this.#snapshotReceived(server, process),
      ),
      transport: new SimTransport(server.id, process, this.#switchboard),
      clock: process.clock,
      random: seededRandom(Math.floor(this.#random.next() * 2 ** 32)),
      tickMs,
      ...(this.#options.tuning === undefined ? {} : { tuning: this.#options.tuning }),
      // Small pieces: a snapshot travels in many (chunked InstallSnapshot).
      snapshotChunkBytes: 200,
      requestTimeoutMs: 100,
      readTimeoutMs: 1_000,
      forwardTimeoutMs: 1_000,
      snapshotTimeoutMs: 300,
      snapshotInstallTimeoutMs: 2_000,
      verifySnapshotOnStart: this.#random.next() < 0.5,
      ...(this.#options.log === undefined
        ? {}
        : { logger: simLogger(this.#time, server.id, this.#options.log) }),
    };
  }

  /** A node stopped: on a fault the simulation injected (expected), or on a bug. */
  #nodeStopped(server: Server, error: unknown): void {
    if (injected(error)) return;
    this.#fail(
      new Error(
        `${server.id} stopped on an error the simulation did not inject: ${describe(error)}`,
        { cause: error },
      ),
    );
  }

  /**
   * A follower received a snapshot whole: sometimes its process is restarted gracefully (or
   * crashes during `close()`) within a few ms, while the node installs it (a crash point between
   * the snapshot store, the state machine's restore and the log store's record of it).
   */
  #snapshotReceived(server: Server, process: SimProcess): void {
    if (!this.#options.crashes || !this.#faultsOn || this.#random.next() >= 0.3) return;
    this.#time.at(randomInt(this.#random, 0, 10), () => {
      if (this.#faultsOn && server.process === process) this.#gracefulRestart(server);
    });
  }

  /**
   * State Machine Safety: every entry a state machine applies is the one applied everywhere.
   * Also counts the client writes applied (each once).
   */
  #applied(server: Server, entries: readonly AppliedEntry<KvCommand>[]): void {
    for (const applied of entries) {
      if (applied.kind === 'command' && applied.session !== undefined) {
        this.#writesApplied.add(`${applied.session.clientId}#${applied.session.seq}`);
      }
    }
    const node = server.supervisor?.node ?? server.node;
    if (node === undefined) return;
    const engine = engineOf(node);
    try {
      for (const applied of entries) {
        // A snapshot the engine installed meanwhile may have replaced the log in memory (the
        // apply in flight finishes first): such an entry cannot be compared here.
        const entry = engine.entry(applied.index);
        if (entry !== undefined) this.#checker.applied(server.id, entry);
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  /** The process on `server` dies where it stands (a crash, or one at a crash point). */
  #kill(server: Server, process: SimProcess): void {
    if (!process.alive) return;
    this.#crashes++;
    if (process.inFlight > 0) this.#crashesInFlight++;
    this.#exit(server, process);
    this.#restartLater(server);
  }

  #exit(server: Server, process: SimProcess): void {
    process.kill();
    if (server.process === process) {
      server.process = undefined;
      server.supervisor = undefined;
      server.node = undefined;
    }
  }

  #restartLater(server: Server): void {
    // After the faulty phase, healing starts every server that is down.
    if (!this.#faultsOn) {
      this.#boot(server);
      return;
    }
    // A third of the processes come back at once (a service manager restarting them): within
    // the election under way, so that what a node promised before dying is put to the test.
    const delay =
      this.#options.leaderChurn || this.#random.next() < 0.33
        ? randomInt(this.#random, 5, 60)
        : randomInt(this.#random, 50, 1_200);
    this.#time.at(delay, () => {
      if (this.#faultsOn) this.#boot(server);
    });
  }

  /** The running node on `server`, if any. */
  #nodeOf(server: Server): RaftNode<KvCommand, KvResult> | undefined {
    const node = server.process?.alive === true ? server.supervisor?.node : undefined;
    return node?.status().closed === false ? node : undefined;
  }

  /** After every event: notices new lives, and checks the safety properties on every engine. */
  #checkInvariants(): void {
    const engines: RaftEngine[] = [];
    for (const server of this.#servers) {
      checkInstallOrder(server.disk);
      const node = this.#nodeOf(server);
      if (node === undefined) continue;
      if (node !== server.node) {
        server.node = node;
        this.#checker.restarted(server.id);
        node.on('snapshot', ({ cause }) => {
          if (cause === 'installed') this.#snapshotsInstalled++;
        });
        node.on('identity-refused', () => this.#identityRefusals++);
      }
      const engine = engineOf(node);
      const status = engine.status();
      if (status.role === 'leader' && !this.#leaderTerms.has(status.term)) {
        this.#leaderTerms.add(status.term);
        this.#newLeader(server);
      }
      engines.push(engine);
      if (status.role === 'leader') this.#checkCommittedDurably(engine);
    }
    this.#checker.check(engines);
  }

  /**
   * A leader's commit index is held durably by a quorum (Raft paper 5.3): the entry there is on
   * the disks of a quorum (both majorities when joint) of the configuration the leader committed
   * it under, or covered by their snapshots. A leader sends its AppendEntries before its own
   * write is durable (thesis 10.2.1), so its own copy counts only once on its disk.
   *
   * The configuration that governed the commit is the latest in the leader's log when it
   * committed (Raft paper 6), which the check, run after each event, brackets: the leader's log
   * then ended between its end after the previous event (or the commit index, on the first check
   * of its term) and its end now. A configuration appended during that same event may be the
   * governing one or not, so any configuration of that stretch of the log is accepted; one
   * appended in an earlier event is not escaped by a quorum of an older one.
   *
   * A server whose disk died (`loseDisk`) counts as holding what its dead disk held, which the
   * rest of the cluster may have counted (Raft cannot keep what a dead disk acknowledged: that
   * is the identity check's business, not this one's), or what its new disk holds.
   */
  #checkCommittedDurably(leader: RaftEngine): void {
    const s = leader.status();
    const key = `${s.id}@${s.term}`;
    const previous = this.#commitChecked.get(key);
    this.#commitChecked.set(key, { commitIndex: s.commitIndex, lastIndex: s.lastIndex });
    if ((previous?.commitIndex ?? 0) >= s.commitIndex) return;
    const entry = leader.entry(s.commitIndex);
    if (entry === undefined) return;
    const onDisk = (disk: SimDisk | undefined): boolean => {
      const log = disk?.log;
      if (log === undefined) return false;
      if (entry.index <= log.snapshot.index) return true;
      return log.entries[entry.index - log.snapshot.index - 1]?.term === entry.term;
    };
    const holds = (id: NodeId): boolean =>
      onDisk(this.#servers.find((server) => server.id === id)?.disk) ||
      (id === this.#lostDisk?.id && onDisk(this.#lostDisk.disk));
    const configs = governingCandidates(leader, Math.max(s.commitIndex, previous?.lastIndex ?? 0));
    if (configs.some((config) => hasQuorum(config, holds))) return;
    const holders = this.#servers.filter((server) => holds(server.id)).map((server) => server.id);
    throw new InvariantViolation(
      'Committed durably',
      `${s.id} (leader of term ${s.term}) committed index ${entry.index} (term ${entry.term}), which only ${holders.join(', ') || 'no server'} holds on disk (a quorum of ${configs.map(describeVoters).join(' or ')} must)`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Faults and operators

  /**
   * One fault, drawn: a crash of any process or of the leader's, a graceful restart, the leader
   * cut off from everyone (a deposed leader that does not know it yet: stale reads, and
   * entries of its term left on a minority, Raft paper Figure 8), a partition, a one-way cut,
   * or a healed network.
   */
  #fault(): void {
    if (!this.#faultsOn) return;
    const up = this.#servers.filter((s) => s.process !== undefined);
    const leader = this.#leader();
    const leaderServer = this.#servers.find((s) => s.id === leader?.id);
    const { crashes, partitions } = this.#options;
    if (this.#options.leaderChurn) {
      this.#churnLeader(leader, leaderServer);
      this.#time.at(randomInt(this.#random, 20, 120), () => this.#fault());
      return;
    }
    const roll = this.#random.next();
    if (crashes && roll < 0.12 && up.length > 0) {
      const server = up[randomInt(this.#random, 0, up.length)]!;
      this.#kill(server, server.process as SimProcess);
    } else if (crashes && roll < 0.22 && leaderServer?.process !== undefined) {
      this.#kill(leaderServer, leaderServer.process);
    } else if (crashes && roll < 0.3 && up.length > 0) {
      this.#gracefulRestart(up[randomInt(this.#random, 0, up.length)]!);
    } else if (partitions && roll < 0.45 && leader !== undefined) {
      this.#network.heal();
      this.#network.partition([
        [leader.id],
        this.#servers.map((s) => s.id).filter((id) => id !== leader.id),
      ]);
      this.#partitions++;
    } else if (partitions && roll < 0.62) {
      const ids = this.#shuffled(this.#servers.map((s) => s.id));
      const cut = randomInt(this.#random, 1, ids.length);
      this.#network.heal();
      this.#network.partition([ids.slice(0, cut), ids.slice(cut)]);
      this.#partitions++;
    } else if (partitions && roll < 0.72) {
      // An asymmetric fault: one node can send but not receive, or the reverse.
      const [victim, ...others] = this.#shuffled(this.#servers.map((s) => s.id));
      for (const other of others) {
        if (this.#random.next() < 0.5) this.#network.block(victim!, other);
        else this.#network.block(other, victim!);
      }
      this.#partitions++;
    } else {
      this.#network.heal();
    }
    this.#time.at(randomInt(this.#random, 150, 700), () => this.#fault());
  }

  /**
   * With leader churn, a new leader is often cut short within a few round trips: while it
   * brings followers up to date with entries of earlier terms, before an entry of its own term
   * reached a majority (Raft paper Figure 8, steps c and d).
   */
  #newLeader(server: Server): void {
    if (!this.#options.leaderChurn || !this.#faultsOn || this.#random.next() < 0.4) return;
    const process = server.process;
    this.#time.at(randomInt(this.#random, 1, 30), () => {
      if (!this.#faultsOn || process === undefined || server.process !== process) return;
      if (this.#random.next() < 0.5) {
        this.#kill(server, process);
      } else {
        this.#network.heal();
        this.#network.partition([
          [server.id],
          this.#servers.map((s) => s.id).filter((id) => id !== server.id),
        ]);
        this.#partitions++;
      }
    });
  }

  /** One step of leader churn (see `SimulationOptions.leaderChurn`). */
  #churnLeader(
    leader: RaftNode<KvCommand, KvResult> | undefined,
    server: Server | undefined,
  ): void {
    const roll = this.#random.next();
    if (roll < 0.3 && server?.process !== undefined) {
      this.#kill(server, server.process);
    } else if (roll < 0.4 && server !== undefined) {
      this.#gracefulRestart(server);
    } else if (roll < 0.7 && leader !== undefined) {
      this.#network.heal();
      this.#network.partition([
        [leader.id],
        this.#servers.map((s) => s.id).filter((id) => id !== leader.id),
      ]);
      this.#partitions++;
    } else {
      this.#network.heal();
    }
  }

  /**
   * `close()` (a rolling restart), sometimes crashing half-way through it (unless
   * `crashHalfway` is false); then a new process.
   */
  #gracefulRestart(server: Server, options: { crashHalfway?: boolean } = {}): void {
    const process = server.process;
    const supervisor = server.supervisor;
    if (process === undefined || supervisor === undefined) return;
    this.#closes++;
    if ((options.crashHalfway ?? true) && this.#random.next() < 0.5) {
      this.#time.at(randomInt(this.#random, 0, 8), () => this.#kill(server, process));
    }
    supervisor.close().then(
      () => {
        if (!process.alive) return;
        this.#exit(server, process);
        this.#restartLater(server);
      },
      (error: unknown) => this.#fail(error),
    );
  }

  /** A node takes a snapshot, keeping a few entries of its log or none. */
  #snapshot(): void {
    if (!this.#faultsOn) return;
    const up = this.#servers.flatMap((s) => {
      const node = this.#nodeOf(s);
      return node === undefined ? [] : [node];
    });
    if (up.length > 0) {
      const node = up[randomInt(this.#random, 0, up.length)]!;
      const retainEntries = this.#random.next() < 0.5 ? 0 : randomInt(this.#random, 1, 10);
      node.takeSnapshot({ retainEntries }).then(
        (taken) => {
          if (taken !== undefined) this.#snapshotsTaken++;
        },
        () => {},
      );
    }
    this.#time.at(randomInt(this.#random, 50, 400), () => this.#snapshot());
  }

  /** The operator asks the leader for a membership change or a leadership transfer. */
  #changeMembership(): void {
    if (!this.#faultsOn) return;
    this.#time.at(randomInt(this.#random, 300, 900), () => this.#changeMembership());
    const leader = this.#leader();
    if (leader === undefined) return;
    const { config } = leader.status();
    if (isJoint(config)) return;
    const action = pickMembershipAction(
      this.#random,
      config,
      this.#servers.map((s) => s.id),
    );
    if (action.kind === 'transfer') {
      if (action.to === leader.id) return;
      this.#transfers++;
      leader.transferLeadership(action.to).catch(() => {});
    } else {
      this.#membershipChanges++;
      leader
        .changeMembership(action.change, { mode: action.mode, timeoutMs: 2_000 })
        .catch(() => {});
    }
  }

  /**
   * The operator asks the current leader for the next step of the plan; with `crashInJoint`, a
   * leader found between C_old,new and C_new may crash instead. Looks again soon while a change
   * is under way, so that the joint phase is seen.
   */
  #followPlan(plan: MembershipPlanRun): void {
    if (plan.done) return;
    const soon = randomInt(this.#random, 1, 10);
    const later = randomInt(this.#random, 5, 60);
    const again = (ms: number): void => {
      this.#time.at(ms, () => this.#followPlan(plan));
    };
    const leader = this.#leader();
    if (leader === undefined) {
      again(later);
      return;
    }
    const { config, configIndex, commitIndex } = leader.status();
    if (isJoint(config)) {
      if (this.#options.crashInJoint && this.#faultsOn && this.#random.next() < 0.5) {
        const server = this.#servers.find((s) => s.id === leader.id) as Server;
        if (server.process !== undefined) {
          this.#kill(server, server.process);
          this.#crashesInJoint++;
        }
      }
      again(soon);
      return;
    }
    if (configIndex > commitIndex) {
      again(soon);
      return;
    }
    const action = plan.next(config, leader.id);
    if (action?.kind !== 'change') {
      again(later);
      return;
    }
    this.#membershipChanges++;
    leader.changeMembership(action.change, { mode: action.mode, timeoutMs: 2_000 }).catch(() => {});
    again(soon);
  }

  /**
   * A follower's disk dies (`loseDisk`): its process is killed, and a new one starts on an empty
   * disk; then the operator replaces it ({@link #replaceLostNode}).
   */
  #loseDisk(): void {
    if (!this.#faultsOn) return;
    const leader = this.#leader();
    // Only once every other server's disk holds the victim's incarnation: a disk lost before that
    // is a known limit of the design (trust on first use, core README), not a bug to find here.
    const knownByAll = (victim: Server): boolean =>
      this.#servers.every(
        (s) =>
          s === victim ||
          s.disk.log.identity?.members[victim.id] === victim.disk.log.identity?.incarnation,
      );
    const followers = this.#servers.filter(
      (s) =>
        s.process !== undefined &&
        s.id !== leader?.id &&
        this.#voters.includes(s.id) &&
        knownByAll(s),
    );
    if (leader === undefined || followers.length === 0) {
      this.#time.at(randomInt(this.#random, 20, 200), () => this.#loseDisk());
      return;
    }
    const server = followers[randomInt(this.#random, 0, followers.length)] as Server;
    this.#kill(server, server.process as SimProcess);
    this.#lostDisk = { id: server.id, disk: server.disk, step: 'remove' };
    server.disk = new SimDisk(server.id);
    this.#time.at(randomInt(this.#random, 100, 400), () => this.#replaceLostNode());
  }

  /**
   * The replacement runbook (core README) for the node whose disk died, asked of the leader
   * again until each step is committed: remove it, then add it back as a learner to promote;
   * done once it is a voter again. Goes on after the faults heal.
   */
  #replaceLostNode(): void {
    const lost = this.#lostDisk;
    if (lost === undefined || lost.step === 'done') return;
    this.#time.at(randomInt(this.#random, 10, 60), () => this.#replaceLostNode());
    const leader = this.#leader();
    if (leader === undefined) return;
    const { config, configIndex, commitIndex } = leader.status();
    if (isJoint(config) || configIndex > commitIndex) return;
    const member = members(config).includes(lost.id);
    if (lost.step === 'remove') {
      if (member) {
        this.#membershipChanges++;
        leader.removeNode(lost.id, { timeoutMs: 2_000 }).catch(() => {});
        return;
      }
      lost.step = 'add';
    }
    if (!member) {
      this.#membershipChanges++;
      leader.addLearner(lost.id, { promote: true, timeoutMs: 2_000 }).catch(() => {});
    } else if (config.voters.includes(lost.id)) {
      lost.step = 'done';
    }
  }

  /** The cluster as the Figure 8 schedule drives it. */
  #figure8Cluster(): Figure8Cluster {
    return {
      nodes: () =>
        this.#servers.flatMap((s) => {
          const node = this.#nodeOf(s);
          return node === undefined ? [] : [engineOf(node)];
        }),
      partition: (groups) => {
        this.#network.heal();
        this.#network.partition(groups);
        this.#partitions++;
      },
      heal: () => this.#network.heal(),
      write: (id) => {
        const supervisor = this.#servers.find((s) => s.id === id)?.supervisor;
        if (supervisor === undefined) return;
        const value = 'figure-8;';
        // Whether it commits is up to the schedule: its outcome is unknown (return at infinity).
        this.#history.push({
          clientId: this.#clients.length + 1,
          input: { kind: 'put', key: 'x', value },
          call: this.now,
          output: UNKNOWN_OUTCOME,
          return: Number.POSITIVE_INFINITY,
        });
        supervisor.propose({ op: 'put', key: 'x', value }).catch(() => {});
      },
    };
  }

  /** The cluster as the install during apply schedule drives it. */
  #installCluster(): InstallDuringApplyCluster {
    const server = (id: NodeId): Server => this.#servers.find((s) => s.id === id) as Server;
    return {
      ...this.#figure8Cluster(),
      snapshot: (id) => {
        const node = this.#nodeOf(server(id));
        node?.takeSnapshot({ retainEntries: 0 }).then(
          (taken) => {
            if (taken !== undefined) this.#snapshotsTaken++;
          },
          () => {},
        );
      },
      stallApplies: (id, ms) => {
        const process = server(id).process;
        if (process !== undefined) process.applyStallMs = ms;
      },
      applied: (id) => server(id).disk.stateMachine.appliedPosition.index,
      restartGracefully: (id, ms) => {
        this.#time.at(ms, () => this.#gracefulRestart(server(id), { crashHalfway: false }));
      },
    };
  }

  /** The leader of the highest term among the running nodes, if any. */
  #leader(): RaftNode<KvCommand, KvResult> | undefined {
    let best: { node: RaftNode<KvCommand, KvResult>; term: number } | undefined;
    for (const server of this.#servers) {
      const node = this.#nodeOf(server);
      const s = node?.status();
      if (
        node !== undefined &&
        s?.role === 'leader' &&
        (best === undefined || s.term > best.term)
      ) {
        best = { node, term: s.term };
      }
    }
    return best?.node;
  }

  #heal(): void {
    this.#faultsOn = false;
    this.#network.heal();
    this.#network.faults = CALM_NETWORK;
    for (const server of this.#servers) {
      if (server.process === undefined) this.#boot(server);
      else server.process.faults = CALM_DISK;
    }
  }

  #shuffled<T>(items: T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = randomInt(this.#random, 0, i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  #clientWake(client: SimClient): void {
    if (client.op === undefined) {
      // No new operations once the faulty phase is over: the clients only finish what they started.
      if (this.now >= this.#options.faultyMs) client.remaining = 0;
      if (client.remaining === 0) return;
      client.remaining--;
      client.op = this.#newOperation(client);
    }
    const op = client.op;
    if (this.now - op.call > OPERATION_TIMEOUT_MS) {
      this.#giveUp(client, op);
      return;
    }
    this.#attempt(client, op);
  }

  #newOperation(client: SimClient): PendingOperation {
    const key = KEYS[randomInt(this.#random, 0, KEYS.length)]!;
    const roll = this.#random.next();
    const call = this.now;
    if (roll < 0.35) {
      return {
        input: { kind: 'get', key },
        command: { op: 'get', key },
        call,
        session: undefined,
        attempt: 0,
      };
    }
    client.seq++;
    const session = { clientId: client.name, seq: client.seq };
    const value = `${client.id}.${client.seq};`;
    const kind = roll < 0.65 ? 'put' : 'append';
    return {
      input: { kind, key, value },
      command: { op: kind, key, value },
      call,
      session,
      attempt: 0,
    };
  }

  /** One try of the client's operation on one node; a try that takes too long is abandoned. */
  #attempt(client: SimClient, op: PendingOperation): void {
    op.attempt++;
    const attempt = op.attempt;
    const up = this.#servers.filter((s) => this.#nodeOf(s) !== undefined);
    const server =
      up.find((s) => s.id === client.leaderHint) ??
      up[randomInt(this.#random, 0, Math.max(1, up.length))];
    const node = server === undefined ? undefined : this.#nodeOf(server);
    if (server === undefined || node === undefined) {
      this.#time.at(20, () => this.#clientWake(client));
      return;
    }
    const current = (): boolean => client.op === op && op.attempt === attempt;
    const controller = new AbortController();
    const cancelTimeout = this.#time.at(ATTEMPT_TIMEOUT_MS, () => {
      if (!current()) return;
      controller.abort(new Error('the attempt timed out'));
      client.leaderHint = undefined;
      this.#clientWake(client);
    });
    const { signal } = controller;
    const input = op.input;
    const result: Promise<KvOutput> =
      input.kind === 'get'
        ? node.read(() => server.disk.stateMachine.get(input.key) ?? '', { signal })
        : (server.supervisor as RaftSupervisor<KvCommand, KvResult>)
            .propose(op.command, {
              ...(op.session === undefined ? {} : { session: op.session }),
              signal,
            })
            .then(() => undefined);
    result.then(
      (output) => {
        if (!current()) return;
        cancelTimeout();
        // Like a real client, keep going to the node that answered.
        client.leaderHint = server.id;
        if (input.kind === 'get') this.#readsCompleted++;
        else this.#writesAcknowledged++;
        this.#complete(client, op, output);
      },
      (error: unknown) => {
        if (!current()) return;
        cancelTimeout();
        if (error instanceof CommandError) {
          this.#fail(new Error(`${JSON.stringify(op.command)} was refused: ${error.message}`));
          return;
        }
        client.leaderHint =
          error instanceof NotLeaderError ? (error.leaderHint ?? undefined) : undefined;
        this.#time.at(randomInt(this.#random, 2, 20), () => this.#clientWake(client));
      },
    );
  }

  #complete(client: SimClient, op: PendingOperation, output: KvOutput): void {
    this.#history.push({
      clientId: client.id,
      input: op.input,
      call: op.call,
      output,
      return: this.now,
    });
    client.op = undefined;
    // Spread each client's operations over the faulty phase.
    const thinkMs = this.#options.faultyMs / this.#options.operationsPerClient;
    this.#time.at(randomInt(this.#random, 1, Math.max(2, thinkMs)), () => this.#clientWake(client));
  }

  #giveUp(client: SimClient, op: PendingOperation): void {
    if (op.input.kind !== 'get') {
      // The write may or may not take effect: its outcome is unknown (return at infinity).
      this.#writesUnknown++;
      this.#history.push({
        clientId: client.id,
        input: op.input,
        call: op.call,
        output: UNKNOWN_OUTCOME,
        return: Number.POSITIVE_INFINITY,
      });
    }
    client.op = undefined;
    this.#time.at(1, () => this.#clientWake(client));
  }

  // -------------------------------------------------------------------------------------------
  // End of run

  /**
   * Every client is done, every server runs a node, and the members of the leader's
   * configuration (which is committed, not joint, with no learner left to promote) applied the
   * whole log.
   */
  #quiescent(): boolean {
    if (this.#clients.some((c) => c.op !== undefined || c.remaining > 0)) return false;
    if (this.#plan !== undefined && !this.#plan.done) return false;
    if (this.#lostDisk !== undefined && this.#lostDisk.step !== 'done') return false;
    if (this.#servers.some((s) => this.#nodeOf(s) === undefined)) return false;
    const leader = this.#leader()?.status();
    if (leader === undefined) return false;
    const { config } = leader;
    if (isJoint(config) || leader.configIndex > leader.commitIndex) return false;
    if ((config.autoPromote ?? []).length > 0) return false;
    return this.#finalMembers().every(
      (s) => this.#nodeOf(s)?.status().appliedIndex === leader.lastIndex,
    );
  }

  /** The servers in the leader's configuration (every server when there is no leader). */
  #finalMembers(): Server[] {
    const config = this.#leader()?.status().config;
    if (config === undefined) return this.#servers;
    const ids = members(config);
    return this.#servers.filter((s) => ids.includes(s.id));
  }

  async #finalChecks(): Promise<void> {
    if (!this.#quiescent()) {
      const states = this.#servers.map((server) => {
        const s = this.#nodeOf(server)?.status();
        const progress =
          s?.role === 'leader'
            ? ` progress ${Object.entries(s.progress)
                .map(([id, p]) => `${id}:${p.state}/match ${p.match}/next ${p.next}`)
                .join(',')}`
            : '';
        return `${server.id}: ${s === undefined ? 'down' : `${s.role} term ${s.term} commit ${s.commitIndex} last ${s.lastIndex} first ${s.firstIndex} applied ${s.appliedIndex}`}${progress}`;
      });
      const busy = this.#clients
        .filter((c) => c.op !== undefined || c.remaining > 0)
        .map(
          (c) =>
            `${c.name} ${c.remaining} left${c.op === undefined ? '' : `, ${c.op.input.kind} since ${c.op.call} ms, attempt ${c.op.attempt}`}`,
        );
      throw new Error(
        `the cluster did not converge within ${CONVERGE_MS} ms after healing (liveness): ${states.join('; ')}; clients: ${busy.join('; ') || 'done'}${this.#plan === undefined ? '' : `; ${this.#plan.describe()}`}`,
      );
    }
    // Every member holds the same state.
    const finalMembers = this.#finalMembers();
    const reference = finalMembers[0]!;
    for (const server of finalMembers) {
      for (const key of KEYS) {
        const value = server.disk.stateMachine.get(key);
        if (value !== reference.disk.stateMachine.get(key)) {
          throw new Error(
            `${server.id} and ${reference.id} disagree on key ${key} after convergence`,
          );
        }
      }
    }
    const leader = this.#leader() as RaftNode<KvCommand, KvResult>;
    const leaderServer = this.#servers.find((s) => s.id === leader.id) as Server;
    // Liveness after healing: the final configuration commits a new write. (A seed whose faulty
    // phase acknowledged nothing, as when every leader crashes in a joint configuration, still
    // shows that the cluster makes progress once the faults stop.)
    const write = { kind: 'put', key: KEYS[0] as string, value: 'healed;' } as const;
    const writeCall = this.now;
    await this.#time.runUntilSettled(
      leader.propose({ op: write.kind, key: write.key, value: write.value }),
      CONVERGE_MS,
    );
    this.#throwIfFailed();
    this.#history.push({
      clientId: this.#clients.length,
      input: write,
      call: writeCall,
      output: undefined,
      return: this.now,
    });
    // A final linearizable read of every key: every acknowledged write must show in it.
    for (const key of KEYS) {
      const call = this.now;
      const value = await this.#time.runUntilSettled(
        leader.read(() => leaderServer.disk.stateMachine.get(key) ?? ''),
        CONVERGE_MS,
      );
      this.#throwIfFailed();
      this.#history.push({
        clientId: this.#clients.length,
        input: { kind: 'get', key },
        call,
        output: value,
        return: this.now,
      });
    }
    const verdict = checkOperations(kvModel, this.#history, { timeoutMs: 30_000 });
    if (verdict.verdict !== 'ok') {
      throw new Error(
        `history of ${this.#history.length} operations: ${verdict.verdict}: ${'message' in verdict ? verdict.message : ''}`,
      );
    }
  }
}

/**
 * A node installs a snapshot by restoring its state machine before the log store records it
 * (`SnapshotExchange.install`, `recoverNodeState`), and compacts its log only behind what the
 * state machine applied: on every disk, whatever stopped its node when, the log store never
 * starts after what the (durable) state machine holds.
 */
function checkInstallOrder(disk: SimDisk): void {
  const logStart = disk.log.snapshot.index;
  const applied = disk.stateMachine.appliedPosition.index;
  if (logStart > applied) {
    throw new InvariantViolation(
      'Snapshot install order',
      `the log store of ${disk.id} starts after index ${logStart}, but its state machine holds only up to ${applied}`,
    );
  }
}

/**
 * A server's state is on stable storage before it answers (Raft paper, Figure 2): a term it
 * sends is durable, and while that is still its durable term, so are a vote it grants and what
 * it acknowledges as a follower (its log up to the index of an AppendEntries or InstallSnapshot
 * acknowledgement). Pre-votes change nothing durable and are not checked.
 */
function checkDurableBeforeSent(disk: SimDisk | undefined, messages: readonly Message[]): void {
  if (disk === undefined) return;
  const { hardState, snapshot, entries } = disk.log;
  const lastIndex = snapshot.index + entries.length;
  for (const m of messages) {
    if ((m.type === 'vote' || m.type === 'vote-response') && m.prevote) continue;
    const violation = (what: string): InvariantViolation =>
      new InvariantViolation(
        'Durable before sent',
        `${m.from} sent ${m.type} of term ${m.term} to ${m.to} ${what} (its disk holds term ${hardState.term}, vote ${hardState.votedFor ?? 'none'}, log up to ${lastIndex})`,
      );
    if (hardState.term < m.term) throw violation('before its term was durable');
    // A node that moved to a later term since (in the same Ready even) may have dropped what it
    // acknowledged in the earlier one, a new leader having truncated it: that is safe, since a
    // leader of a later term holds every entry committed before its term (Raft paper 5.4.3).
    if (hardState.term > m.term) continue;
    if (m.type === 'vote-response' && m.granted && hardState.votedFor !== m.to) {
      throw violation('granting a vote that is not durable');
    }
    if (m.type === 'append-response' && m.success && lastIndex < m.index) {
      throw violation(`acknowledging index ${m.index} before its log held it`);
    }
    if (m.type === 'snapshot-response' && lastIndex < m.index) {
      throw violation(`acknowledging a snapshot at ${m.index} before its log recorded it`);
    }
  }
}

/**
 * A follower answers the last piece of a snapshot once its node handled the snapshot durably
 * (`SnapshotReceiver`): its log store records the snapshot (or already held its entries), or
 * it is in a later term than the leader that sent it, durably.
 */
function checkSnapshotHeldDurably(disk: SimDisk | undefined, message: InstallSnapshot): void {
  if (disk === undefined) return;
  const { hardState, snapshot, entries } = disk.log;
  const lastIndex = snapshot.index + entries.length;
  if (lastIndex >= message.snapshot.index || hardState.term > message.term) return;
  throw new InvariantViolation(
    'Durable before sent',
    `${disk.id} answered that it holds snapshot ${message.snapshot.index}/${message.snapshot.term} before its log store recorded it (log up to ${lastIndex}, term ${hardState.term})`,
  );
}

/** A logger writing one line per message: virtual time, node, level, message, context. */
function simLogger(time: VirtualTime, id: NodeId, write: (line: string) => void): Logger {
  const at =
    (level: string): LogFn =>
    (context: object | string, message?: string) => {
      const [text, fields] = typeof context === 'string' ? [context, {}] : [message ?? '', context];
      const json = JSON.stringify(fields, (_key, value: unknown) =>
        value instanceof Error ? describe(value) : value,
      );
      write(`${String(time.now).padStart(6)} ${id} ${level} ${text} ${json}`);
    };
  const logger: Logger = {
    debug: () => {},
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  };
  return logger;
}

/** Whether `error` comes of a storage fault the simulation injected (anywhere in its causes). */
function injected(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 10; depth++) {
    if (e instanceof InjectedStorageFault) return true;
    e = e.cause;
  }
  return false;
}

/**
 * The configurations in `leader`'s log from index `from` (not before its log's start) to its
 * last entry: the one in force at `from`, then every one appended after it, newest first.
 */
function governingCandidates(leader: RaftEngine, from: number): ClusterConfig[] {
  const configs: ClusterConfig[] = [];
  let at = leader.indexedConfigAt(leader.status().lastIndex);
  for (;;) {
    configs.push(at.config);
    if (at.index <= from) return configs;
    at = leader.indexedConfigAt(at.index - 1);
  }
}

/** A configuration's voters, for a message: `n1,n2,n3`, or `n1,n2 & n2,n3` when joint. */
function describeVoters(config: ClusterConfig): string {
  const voters = config.voters.join(',');
  return config.outgoingVoters === undefined
    ? voters
    : `${voters} & ${config.outgoingVoters.join(',')}`;
}

function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 10; depth++) {
    parts.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(' <- ');
}
