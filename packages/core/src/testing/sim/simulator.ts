import { isJoint, members } from '../../configuration.ts';
import type { EngineTuning } from '../../engine/engine-options.ts';
import type { Ready } from '../../engine/ready.ts';
import type { LogEntry, NodeId } from '../../log-entry.ts';
import type { Message } from '../../message.ts';
import { type RandomSource, randomInt, seededRandom } from '../../random.ts';
import type { CommandResult } from '../../state-machine.ts';
import type { KvCommand, KvResult } from '../kv-state-machine.ts';
import { checkOperations } from '../linearizability/checker.ts';
import { type KvInput, type KvOutput, kvModel } from '../linearizability/kv-model.ts';
import { type Operation, UNKNOWN_OUTCOME } from '../linearizability/operation.ts';
import { EventQueue } from './event-queue.ts';
import { InvariantChecker } from './invariant-checker.ts';
import { pickMembershipAction } from './membership-actions.ts';
import { type MembershipPlanName, MembershipPlanRun, planServers } from './membership-plans.ts';
import { CALM_NETWORK, type NetworkFaults, SimNetwork } from './sim-network.ts';
import { SimNode, simCodec } from './sim-node.ts';

/** What to simulate. Everything random is drawn from `seed`. */
export interface SimulationOptions {
  readonly seed: number;
  /** Number of voters. Default 3, or the voters of the `membership` plan. */
  readonly nodes?: number;
  /** Simulated clients, each running one operation at a time. Default 4. */
  readonly clients?: number;
  /** Operations each client performs. Default 40. */
  readonly operationsPerClient?: number;
  /** Virtual time with faults, in ms; then the network heals and the cluster must converge. Default 8,000. */
  readonly faultyMs?: number;
  /** Network faults during the faulty phase. Default: lossy, duplicating, reordering. */
  readonly faults?: NetworkFaults;
  /** Inject partitions (also one-way) during the faulty phase. Default true. */
  readonly partitions?: boolean;
  /** Crash and restart nodes during the faulty phase. Default true. */
  readonly crashes?: boolean;
  /** A node snapshots and compacts its log once this many entries are applied past its first index. Default 40. */
  readonly snapshotEvery?: number;
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
  readonly tuning?: Partial<EngineTuning>;
}

/** What a simulation did; every number is a count over the whole run. */
export interface SimulationReport {
  readonly seed: number;
  readonly events: number;
  readonly virtualMs: number;
  readonly leaderTerms: number;
  readonly writesAcknowledged: number;
  readonly writesUnknown: number;
  readonly readsCompleted: number;
  readonly crashes: number;
  readonly partitions: number;
  readonly snapshotsInstalled: number;
  /** Membership changes the leader accepted, and leadership transfers it started. */
  readonly membershipChanges: number;
  readonly transfers: number;
  /** Leaders crashed between C_old,new and C_new (`crashInJoint`). */
  readonly crashesInJoint: number;
  /** The voters of the final configuration, sorted. */
  readonly finalVoters: readonly NodeId[];
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

/** Tiny AppendEntries and windows: replication interleaves in many more ways. */
export const SMALL_BATCHES: Partial<EngineTuning> = Object.freeze({
  maxEntriesPerMessage: 2,
  maxInflightMessages: 2,
});

const TICK_MS = 10;
const ATTEMPT_TIMEOUT_MS = 400;
const OPERATION_TIMEOUT_MS = 3_000;
const CONVERGE_MS = 5_000;
const KEYS = ['x', 'y', 'z'];

type SimEvent =
  | { kind: 'tick'; node: SimNode; epoch: number; everyMs: number }
  | { kind: 'persisted'; node: SimNode; epoch: number; ready: Ready }
  | { kind: 'deliver'; node: SimNode; message: Message; snapshot: Uint8Array | undefined }
  | { kind: 'client'; client: SimClient }
  | { kind: 'attempt-timeout'; client: SimClient; op: PendingOperation; attempt: number }
  | { kind: 'snapshot-failed'; node: SimNode; to: NodeId; epoch: number }
  | { kind: 'fault' }
  | { kind: 'membership' }
  | { kind: 'restart'; node: SimNode };

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

/**
 * Runs a Raft cluster of {@link SimNode}s on virtual time under network faults, partitions and
 * crash-restarts, with clients writing and reading linearizably. After every event the
 * {@link InvariantChecker} checks Raft's safety properties; at the end the network heals, the
 * cluster must converge, every acknowledged write must be applied everywhere, and the clients'
 * history must be linearizable. Deterministic: one seed, one run. Throws
 * {@link SimulationFailure} (carrying the seed) on any violation.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationReport> {
  const sim = new Simulation(options);
  try {
    return await sim.run();
  } catch (error) {
    throw new SimulationFailure(options, sim.now, error);
  }
}

class Simulation {
  now = 0;
  readonly #options: Required<Omit<SimulationOptions, 'tuning'>> & {
    tuning?: Partial<EngineTuning>;
  };
  readonly #random: RandomSource;
  readonly #queue = new EventQueue<SimEvent>();
  readonly #network: SimNetwork;
  readonly #nodes: SimNode[];
  readonly #clients: SimClient[];
  readonly #checker = new InvariantChecker();
  readonly #history: Operation<KvInput, KvOutput>[] = [];
  /** Proposals waiting to be applied on the node that accepted them, by `node:index`. */
  readonly #pendingWrites = new Map<
    string,
    { client: SimClient; op: PendingOperation; term: number }
  >();
  /** Reads waiting for their read index, by read id. */
  readonly #pendingReads = new Map<
    string,
    { client: SimClient; op: PendingOperation; node: SimNode }
  >();
  /** Reads whose index is known, waiting for the node to apply that far. */
  #readsAwaitingApply: { client: SimClient; op: PendingOperation; node: SimNode; index: number }[] =
    [];
  readonly #acknowledged: { index: number; term: number }[] = [];
  #events = 0;
  #faultsOn = true;
  #leaderTerms = new Set<number>();
  #writesUnknown = 0;
  #readsCompleted = 0;
  #crashes = 0;
  #partitions = 0;
  #snapshotsInstalled = 0;
  #membershipChanges = 0;
  #transfers = 0;
  #crashesInJoint = 0;
  #readSeq = 0;
  readonly #plan: MembershipPlanRun | undefined;

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
    this.#options = {
      nodes: plan === undefined ? 3 : planServers(plan).voters,
      clients: 4,
      operationsPerClient: 40,
      faultyMs: 8_000,
      faults: LOSSY_NETWORK,
      partitions: true,
      crashes: true,
      snapshotEvery: 40,
      membership: false,
      crashInJoint: false,
      ...options,
    };
    this.#random = seededRandom(options.seed);
    this.#network = new SimNetwork(this.#random, this.#options.faults);
    const spares =
      plan === undefined ? (this.#options.membership ? 2 : 0) : planServers(plan).spares;
    const ids = Array.from({ length: this.#options.nodes + spares }, (_, i) => `n${i + 1}`);
    this.#plan = plan === undefined ? undefined : new MembershipPlanRun(plan, ids);
    const voters = ids.slice(0, this.#options.nodes);
    this.#nodes = ids.map(
      (id) =>
        new SimNode({
          id,
          config: { voters },
          ...(this.#options.tuning === undefined ? {} : { tuning: this.#options.tuning }),
        }),
    );
    this.#clients = Array.from({ length: this.#options.clients }, (_, i) => ({
      id: i,
      name: `client-${i}`,
      seq: 0,
      remaining: this.#options.operationsPerClient,
      op: undefined,
      leaderHint: undefined,
    }));
  }

  async run(): Promise<SimulationReport> {
    for (const node of this.#nodes) await this.#startNode(node);
    for (const client of this.#clients)
      this.#schedule(randomInt(this.#random, 0, 50), { kind: 'client', client });
    if (this.#options.partitions || this.#options.crashes) this.#schedule(300, { kind: 'fault' });
    if (this.#options.membership) this.#schedule(500, { kind: 'membership' });

    const faultyUntil = this.#options.faultyMs;
    const deadline = faultyUntil + CONVERGE_MS + OPERATION_TIMEOUT_MS;
    let healed = false;
    for (;;) {
      const next = this.#queue.pop();
      if (next === undefined) break;
      this.now = next.time;
      if (!healed && this.now >= faultyUntil) {
        healed = true;
        await this.#heal();
      }
      if (this.now > deadline) break;
      await this.#handle(next.item);
      this.#events++;
      this.#checker.check(this.#aliveEngines());
      if (healed && this.#quiescent()) break;
    }
    await this.#finalChecks();
    return {
      seed: this.#options.seed,
      events: this.#events,
      virtualMs: this.now,
      leaderTerms: this.#leaderTerms.size,
      writesAcknowledged: this.#acknowledged.length,
      writesUnknown: this.#writesUnknown,
      readsCompleted: this.#readsCompleted,
      crashes: this.#crashes,
      partitions: this.#partitions,
      snapshotsInstalled: this.#snapshotsInstalled,
      membershipChanges: this.#membershipChanges,
      transfers: this.#transfers,
      crashesInJoint: this.#crashesInJoint,
      finalVoters: [...(this.#leader()?.engine?.status().config.voters ?? [])].sort(),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Events

  #schedule(delay: number, event: SimEvent): void {
    this.#queue.push(this.now + delay, event);
  }

  async #handle(event: SimEvent): Promise<void> {
    switch (event.kind) {
      case 'tick': {
        const engine = event.node.engine;
        if (engine === undefined || event.epoch !== event.node.epoch) return;
        engine.tick();
        const status = engine.status();
        if (status.role === 'leader') this.#leaderTerms.add(status.term);
        this.#schedule(event.everyMs, event);
        this.#maybeReady(event.node);
        return;
      }
      case 'deliver': {
        const engine = event.node.engine;
        if (engine === undefined) {
          // A snapshot travels as a request: to a node that is down, the sender sees it fail.
          if (event.message.type === 'snapshot') this.#snapshotFailed(event.message);
          return;
        }
        if (event.snapshot !== undefined && event.message.type === 'snapshot') {
          const s = event.message.snapshot;
          event.node.receivedSnapshots.set(`${s.index}:${s.term}`, event.snapshot);
          event.node.snapshotRequests.push({
            message: event.message,
            after: event.node.readiesTaken + 1,
          });
        }
        engine.step(event.message);
        this.#maybeReady(event.node);
        return;
      }
      case 'persisted':
        if (event.epoch !== event.node.epoch) return;
        await this.#persisted(event.node, event.ready);
        return;
      case 'client':
        this.#clientWake(event.client);
        return;
      case 'attempt-timeout':
        // The attempt did not complete in time (a crash, a lost leadership): try again.
        if (event.client.op === event.op && event.op.attempt === event.attempt) {
          this.#clientWake(event.client);
        }
        return;
      case 'snapshot-failed':
        if (event.epoch === event.node.epoch) event.node.engine?.reportSnapshotFailed(event.to);
        this.#maybeReady(event.node);
        return;
      case 'fault':
        if (!this.#faultsOn) return;
        await this.#injectFault();
        this.#schedule(randomInt(this.#random, 200, 900), event);
        return;
      case 'membership':
        if (this.#plan !== undefined) {
          if (this.#plan.done) return;
          this.#schedule(await this.#followPlan(this.#plan), event);
          return;
        }
        if (!this.#faultsOn) return;
        this.#changeMembership();
        this.#schedule(randomInt(this.#random, 300, 900), event);
        return;
      case 'restart':
        if (!event.node.alive) await this.#startNode(event.node);
        return;
    }
  }

  /** The operator asks the current leader for a membership change or a leadership transfer. */
  #changeMembership(): void {
    const leader = this.#leader();
    const engine = leader?.engine;
    if (leader === undefined || engine === undefined) return;
    const { config } = engine.status();
    if (isJoint(config)) return;
    const servers = this.#nodes.map((n) => n.id);
    const action = pickMembershipAction(this.#random, config, servers);
    if (action.kind === 'transfer') {
      if (action.to === leader.id) return;
      if (engine.transferLeadership(action.to === undefined ? {} : { to: action.to }).ok) {
        this.#transfers++;
      }
    } else if (engine.proposeConfigChange(action.change, { mode: action.mode }).ok) {
      this.#membershipChanges++;
    }
    this.#maybeReady(leader);
  }

  /**
   * The operator asks the current leader for the next step of the plan; with `crashInJoint`,
   * a leader found between C_old,new and C_new may crash instead. Resolves with the delay to
   * the next look: short while a change is under way, so that the joint phase is seen.
   */
  async #followPlan(plan: MembershipPlanRun): Promise<number> {
    const soon = randomInt(this.#random, 1, 10);
    const later = randomInt(this.#random, 5, 60);
    const leader = this.#leader();
    const engine = leader?.engine;
    if (leader === undefined || engine === undefined) return later;
    const { config, configIndex, commitIndex } = engine.status();
    if (isJoint(config)) {
      if (this.#options.crashInJoint && this.#faultsOn && this.#random.next() < 0.5) {
        await this.#crash(leader);
        this.#crashesInJoint++;
        this.#schedule(randomInt(this.#random, 50, 1_200), { kind: 'restart', node: leader });
      }
      return soon;
    }
    if (configIndex > commitIndex) return soon;
    const action = plan.next(config, leader.id);
    if (action?.kind !== 'change') return later;
    if (engine.proposeConfigChange(action.change, { mode: action.mode }).ok) {
      this.#membershipChanges++;
    }
    this.#maybeReady(leader);
    return soon;
  }

  /** The leader of the highest term among the alive nodes, if any. */
  #leader(): SimNode | undefined {
    let best: { node: SimNode; term: number } | undefined;
    for (const node of this.#nodes) {
      const s = node.engine?.status();
      if (s?.role === 'leader' && (best === undefined || s.term > best.term)) {
        best = { node, term: s.term };
      }
    }
    return best?.node;
  }

  async #startNode(node: SimNode): Promise<void> {
    await node.start(seededRandom(Math.floor(this.#random.next() * 2 ** 32)));
    this.#checker.restarted(node.id);
    // Clocks drift: each life of a node ticks at its own rate, up to 30% off the nominal one.
    const everyMs = randomInt(this.#random, TICK_MS - 3, TICK_MS + 4);
    this.#schedule(randomInt(this.#random, 1, everyMs + 1), {
      kind: 'tick',
      node,
      epoch: node.epoch,
      everyMs,
    });
  }

  /** Takes the node's next Ready, and completes it after a random disk latency. */
  #maybeReady(node: SimNode): void {
    const engine = node.engine;
    if (engine === undefined || node.busy !== undefined || !engine.hasReady()) return;
    const ready = engine.ready();
    node.readiesTaken++;
    node.busy = ready;
    this.#schedule(randomInt(this.#random, 0, 3), {
      kind: 'persisted',
      node,
      epoch: node.epoch,
      ready,
    });
  }

  /** The Ready contract, in order: snapshot, write, send, apply, reads, advance. */
  async #persisted(node: SimNode, ready: Ready): Promise<void> {
    const engine = node.engine;
    if (engine === undefined) return;
    await node.persist(ready);
    if (ready.snapshot !== undefined) this.#snapshotsInstalled++;
    for (const message of ready.messages) await this.#send(node, message);
    const results = await node.apply(ready.committed);
    ready.committed.forEach((entry, i) => {
      this.#checker.applied(node.id, entry);
      this.#onApplied(node, entry, results[i]);
    });
    for (const read of ready.reads) this.#onReadIndex(read);
    node.busy = undefined;
    engine.advance(ready);
    // InstallSnapshot requests are answered once the Ready that handled them is carried out.
    node.snapshotRequests = node.snapshotRequests.filter((r) => r.after > node.readiesTaken);
    this.#serveReads();
    const status = engine.status();
    if (node.appliedIndex - status.firstIndex >= this.#options.snapshotEvery) {
      await node.snapshotAndCompact();
    }
    this.#maybeReady(node);
  }

  async #send(from: SimNode, message: Message): Promise<void> {
    const to = this.#nodes.find((n) => n.id === message.to);
    if (to === undefined) return;
    let snapshot: Uint8Array | undefined;
    if (message.type === 'snapshot') {
      snapshot = await from.snapshotData(message.snapshot);
      if (snapshot === undefined) {
        from.engine?.reportSnapshotFailed(message.to);
        return;
      }
    }
    const deliveries = this.#network.deliveries(from.id, message.to);
    for (const delay of deliveries) {
      this.#schedule(delay, { kind: 'deliver', node: to, message, snapshot });
    }
    // A snapshot travels as a request: its sender learns that it failed (after a timeout).
    if (message.type === 'snapshot' && deliveries.length === 0) this.#snapshotFailed(message);
  }

  /** Tells the sender of a snapshot that its transfer failed, as a timed-out request would. */
  #snapshotFailed(message: Message & { type: 'snapshot' }): void {
    const sender = this.#nodes.find((n) => n.id === message.from);
    if (sender === undefined) return;
    this.#schedule(ATTEMPT_TIMEOUT_MS, {
      kind: 'snapshot-failed',
      node: sender,
      to: message.to,
      epoch: sender.epoch,
    });
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  async #injectFault(): Promise<void> {
    const alive = this.#nodes.filter((n) => n.alive);
    const roll = this.#random.next();
    if (this.#options.crashes && roll < 0.3 && alive.length > 0) {
      const node = alive[randomInt(this.#random, 0, alive.length)]!;
      await this.#crash(node);
      this.#schedule(randomInt(this.#random, 50, 1_200), { kind: 'restart', node });
    } else if (this.#options.partitions && roll < 0.55) {
      const ids = this.#shuffled(this.#nodes.map((n) => n.id));
      const cut = randomInt(this.#random, 1, ids.length);
      this.#network.heal();
      this.#network.partition([ids.slice(0, cut), ids.slice(cut)]);
      this.#partitions++;
    } else if (this.#options.partitions && roll < 0.7) {
      // An asymmetric fault: one node can send but not receive, or the reverse.
      const ids = this.#shuffled(this.#nodes.map((n) => n.id));
      const [victim, ...others] = ids;
      for (const other of others) {
        if (this.#random.next() < 0.5) this.#network.block(victim!, other);
        else this.#network.block(other, victim!);
      }
      this.#partitions++;
    } else {
      this.#network.heal();
    }
  }

  async #crash(node: SimNode): Promise<void> {
    // The requests of snapshots not yet handled fail: their senders will try again.
    for (const { message } of node.snapshotRequests) this.#snapshotFailed(message);
    node.snapshotRequests = [];
    await node.crash(this.#random.next() < 0.5);
    this.#crashes++;
    for (const key of this.#pendingWrites.keys()) {
      if (key.startsWith(`${node.id}:`)) this.#pendingWrites.delete(key);
    }
    for (const [id, pending] of this.#pendingReads) {
      if (pending.node === node) this.#pendingReads.delete(id);
    }
    this.#readsAwaitingApply = this.#readsAwaitingApply.filter((r) => r.node !== node);
  }

  async #heal(): Promise<void> {
    this.#faultsOn = false;
    this.#network.heal();
    this.#network.faults = CALM_NETWORK;
    for (const node of this.#nodes) {
      if (!node.alive) await this.#startNode(node);
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
    if (roll < 0.35) {
      return {
        input: { kind: 'get', key },
        command: { op: 'get', key },
        call: this.now,
        session: undefined,
        attempt: 0,
      };
    }
    client.seq++;
    const session = { clientId: client.name, seq: client.seq };
    const value = `${client.id}.${client.seq};`;
    if (roll < 0.65) {
      return {
        input: { kind: 'put', key, value },
        command: { op: 'put', key, value },
        call: this.now,
        session,
        attempt: 0,
      };
    }
    return {
      input: { kind: 'append', key, value },
      command: { op: 'append', key, value },
      call: this.now,
      session,
      attempt: 0,
    };
  }

  #attempt(client: SimClient, op: PendingOperation): void {
    op.attempt++;
    const attempt = op.attempt;
    const alive = this.#nodes.filter((n) => n.alive);
    const hinted = alive.find((n) => n.id === client.leaderHint);
    const node = hinted ?? alive[randomInt(this.#random, 0, Math.max(1, alive.length))];
    const engine = node?.engine;
    if (node === undefined || engine === undefined) {
      this.#schedule(20, { kind: 'client', client });
      return;
    }
    if (op.input.kind === 'get') {
      const id = `read-${++this.#readSeq}`;
      this.#pendingReads.set(id, { client, op, node });
      engine.readIndex(id);
      this.#maybeReady(node);
    } else {
      const data = simCodec.encode({
        command: op.command,
        ...(op.session === undefined ? {} : { session: op.session }),
        timestamp: this.now,
      });
      const result = engine.propose([data]);
      if (!result.ok) {
        client.leaderHint =
          result.reason === 'not-leader' ? (result.leaderHint ?? undefined) : client.leaderHint;
        this.#schedule(result.reason === 'backpressure' ? 20 : 5, { kind: 'client', client });
        return;
      }
      this.#pendingWrites.set(`${node.id}:${result.index}`, { client, op, term: result.term });
      this.#maybeReady(node);
    }
    this.#schedule(ATTEMPT_TIMEOUT_MS, { kind: 'attempt-timeout', client, op, attempt });
  }

  #onApplied(node: SimNode, entry: LogEntry, result: CommandResult<KvResult> | undefined): void {
    const key = `${node.id}:${entry.index}`;
    const pending = this.#pendingWrites.get(key);
    if (pending === undefined) return;
    this.#pendingWrites.delete(key);
    const { client, op } = pending;
    if (client.op !== op) return;
    if (entry.term !== pending.term) {
      // Overwritten by another leader: the proposal was dropped; retry with the same session.
      this.#schedule(1, { kind: 'client', client });
      return;
    }
    if (result?.status !== 'ok') {
      throw new Error(`write ${JSON.stringify(op.command)} failed: ${JSON.stringify(result)}`);
    }
    this.#acknowledged.push({ index: entry.index, term: entry.term });
    client.leaderHint = node.id;
    this.#complete(client, op, undefined);
  }

  #onReadIndex(read: Ready['reads'][number]): void {
    const pending = this.#pendingReads.get(read.id);
    if (pending === undefined) return;
    this.#pendingReads.delete(read.id);
    if (pending.client.op !== pending.op) return;
    if ('error' in read) {
      pending.client.leaderHint = undefined;
      this.#schedule(5, { kind: 'client', client: pending.client });
      return;
    }
    this.#readsAwaitingApply.push({ ...pending, index: read.index });
  }

  #serveReads(): void {
    this.#readsAwaitingApply = this.#readsAwaitingApply.filter((read) => {
      if (read.node.appliedIndex < read.index) return true;
      if (read.client.op === read.op && read.op.input.kind === 'get') {
        this.#readsCompleted++;
        // Like a real client, keep going to the node that answered.
        read.client.leaderHint = read.node.id;
        this.#complete(read.client, read.op, read.node.stateMachine.get(read.op.input.key) ?? '');
      }
      return false;
    });
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
    this.#schedule(randomInt(this.#random, 1, Math.max(2, thinkMs)), { kind: 'client', client });
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
    this.#schedule(1, { kind: 'client', client });
  }

  // -------------------------------------------------------------------------------------------
  // End of run

  #aliveEngines() {
    return this.#nodes.flatMap((n) => (n.engine === undefined ? [] : [n.engine]));
  }

  /**
   * Every client is done, every node is up, and the members of the leader's configuration (which
   * is committed, not joint, with no learner left to promote) applied the whole log.
   */
  #quiescent(): boolean {
    if (this.#clients.some((c) => c.op !== undefined || c.remaining > 0)) return false;
    if (this.#plan !== undefined && !this.#plan.done) return false;
    if (this.#nodes.some((n) => !n.alive)) return false;
    const leader = this.#leader()?.engine?.status();
    if (leader === undefined) return false;
    const { config } = leader;
    if (isJoint(config) || leader.configIndex > leader.commitIndex) return false;
    if ((config.autoPromote ?? []).length > 0) return false;
    return this.#finalMembers().every(
      (n) => n.appliedIndex === leader.lastIndex && n.busy === undefined,
    );
  }

  /** The members of the leader's configuration (every node when there is no leader). */
  #finalMembers(): SimNode[] {
    const config = this.#leader()?.engine?.status().config;
    if (config === undefined) return this.#nodes;
    const ids = members(config);
    return this.#nodes.filter((n) => ids.includes(n.id));
  }

  async #finalChecks(): Promise<void> {
    if (!this.#quiescent()) {
      const states = this.#nodes.map((n) => {
        const s = n.engine?.status();
        const progress =
          s?.role === 'leader'
            ? ` progress ${Object.entries(s.progress)
                .map(([id, p]) => `${id}:${p.state}/match ${p.match}/next ${p.next}`)
                .join(',')}`
            : '';
        return `${n.id}: ${s === undefined ? 'down' : `${s.role} term ${s.term} commit ${s.commitIndex} last ${s.lastIndex} first ${s.firstIndex}`} applied ${n.appliedIndex}${progress}`;
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
    // Every member holds the same state, and every acknowledged write is applied on every member.
    const finalMembers = this.#finalMembers();
    const reference = finalMembers[0]!;
    for (const node of finalMembers) {
      for (const key of KEYS) {
        if (node.stateMachine.get(key) !== reference.stateMachine.get(key)) {
          throw new Error(
            `${node.id} and ${reference.id} disagree on key ${key} after convergence`,
          );
        }
      }
    }
    for (const { index, term } of this.#acknowledged) {
      const applied = this.#checker.appliedAt(index);
      if (applied?.term !== term) {
        throw new Error(
          `acknowledged write at index ${index} (term ${term}) is not the applied entry`,
        );
      }
      for (const node of finalMembers) {
        if (node.appliedIndex < index) {
          throw new Error(`acknowledged write at index ${index} is not applied on ${node.id}`);
        }
      }
    }
    const verdict = checkOperations(kvModel, this.#history, { timeoutMs: 30_000 });
    if (verdict.verdict !== 'ok') {
      throw new Error(
        `history of ${this.#history.length} operations: ${verdict.verdict}: ${'message' in verdict ? verdict.message : ''}`,
      );
    }
  }
}
