import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../configuration.ts';
import type { EngineTuning } from '../../engine/engine-options.ts';
import { hasQuorum } from '../../engine/quorum.ts';
import { RaftEngine } from '../../engine/raft-engine.ts';
import type { Ready } from '../../engine/ready.ts';
import type { NodeId } from '../../log-entry.ts';
import type { Message } from '../../message.ts';
import { seededRandom } from '../../random.ts';
import { MemoryLogStore } from '../memory-log-store.ts';
import { InvariantChecker } from './invariant-checker.ts';

/**
 * Message interleavings, chosen by fast-check: a cluster of 3 or 5 engines driven by hand, with a
 * network that is a list of messages in flight. Each step ticks a node, delivers any message in
 * flight (or a duplicate of it, or a burst of them), drops one, partitions or heals, proposes,
 * takes a node's Ready (its disk is then slow: the write is outstanding until a `complete` step
 * while the node keeps receiving messages; a leader's AppendEntries of the Ready, its
 * `earlyMessages`, are in flight from then on), carries Readies out, crashes and restarts a node from
 * its log store (with or without the outstanding write), or compacts a node's log. In half of
 * the runs the cluster has five servers of which three are the initial voters, and the leader is
 * also asked for membership changes (one step or joint, with learners to promote) and leadership
 * transfers (Raft paper 6, thesis 3.10 and 4).
 *
 * After every step the {@link InvariantChecker} checks Raft's safety properties (Raft paper,
 * Figure 3), and the driver checks the engines' durability claims against the disks: what an
 * engine counts as persisted is on its disk, a committed entry is on a quorum of disks, a vote
 * is on disk before it is sent, an entry is on disk before it is applied. Each engine writes to a
 * {@link MemoryLogStore}, which rejects a write that breaks the log's shape (a term going back, a
 * second vote in a term, a gap): such a rejection fails the test too.
 *
 * A failure prints the shrunk command list with its `seed` and `path`; replay it with
 * TSRAFT_FC_SEED and TSRAFT_FC_PATH. TSRAFT_INTERLEAVING_RUNS sets the number of runs (default
 * 4,000, a few seconds).
 */

const ALL_IDS: readonly NodeId[] = ['n1', 'n2', 'n3', 'n4', 'n5'];

type Command =
  | { readonly kind: 'tick'; readonly node: number; readonly times: number }
  | { readonly kind: 'deliver'; readonly message: number; readonly duplicate: boolean }
  | { readonly kind: 'deliver-burst'; readonly message: number; readonly count: number }
  | { readonly kind: 'drop'; readonly message: number }
  | {
      readonly kind: 'propose';
      readonly node: number;
      readonly count: number;
      /** Propose to a node that believes it leads, if any, rather than to `node`. */
      readonly toLeader: boolean;
    }
  | { readonly kind: 'campaign'; readonly node: number }
  | { readonly kind: 'isolate'; readonly node: number }
  | { readonly kind: 'heal' }
  | { readonly kind: 'ready'; readonly node: number }
  | { readonly kind: 'complete'; readonly node: number }
  | { readonly kind: 'flush'; readonly node: number }
  | { readonly kind: 'flush-all' }
  | { readonly kind: 'settle'; readonly rounds: number }
  | { readonly kind: 'crash'; readonly node: number; readonly keepWrite: boolean }
  | { readonly kind: 'compact'; readonly node: number }
  | {
      readonly kind: 'reconfigure';
      /** Bit masks over the five servers; voters is never empty. */
      readonly voters: number;
      readonly learners: number;
      readonly joint: boolean;
      readonly autoPromote: boolean;
    }
  | { readonly kind: 'transfer'; readonly node: number; readonly anyTarget: boolean };

/** A node, taken modulo the cluster size. */
const node = fc.nat(ALL_IDS.length - 1);
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('tick'),
      node,
      times: fc.integer({ min: 1, max: 4 }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('deliver'),
      message: fc.nat(),
      duplicate: fc.constant(false),
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('deliver'),
      message: fc.nat(),
      duplicate: fc.constant(true),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('deliver-burst'),
      message: fc.nat(),
      count: fc.integer({ min: 2, max: 8 }),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('drop'), message: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('propose'),
      node,
      count: fc.integer({ min: 1, max: 3 }),
      toLeader: fc.boolean(),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ kind: fc.constant('campaign'), node }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('isolate'), node }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('heal') }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('ready'), node }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('complete'), node }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('flush'), node }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('flush-all') }), weight: 3 },
  {
    arbitrary: fc.record({ kind: fc.constant('settle'), rounds: fc.integer({ min: 1, max: 3 }) }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('crash'), node, keepWrite: fc.boolean() }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant('compact'), node }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('reconfigure'),
      voters: fc.integer({ min: 1, max: 31 }),
      learners: fc.integer({ min: 0, max: 31 }),
      joint: fc.boolean(),
      autoPromote: fc.boolean(),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('transfer'), node, anyTarget: fc.boolean() }),
    weight: 1,
  },
);

/** The servers a bit mask names. */
function idsOf(mask: number): NodeId[] {
  return ALL_IDS.filter((_, i) => (mask & (1 << i)) !== 0);
}

interface RunSetup {
  /** 3 nodes, or 5: with 5, a minority of two can hold entries that are never committed. */
  readonly size: 3 | 5;
  /**
   * Membership changes and leadership transfers: five servers, of which the first three are
   * the initial voters, and 'reconfigure' and 'transfer' commands take effect.
   */
  readonly membership: boolean;
  readonly seed: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Small batches and windows, so that flow control and probing are exercised. */
  readonly maxEntriesPerMessage: number;
  readonly maxInflightMessages: number;
}

const setupArb: fc.Arbitrary<RunSetup> = fc.record({
  size: fc.constantFrom(3 as const, 5 as const),
  membership: fc.boolean(),
  seed: fc.nat(1_000_000),
  preVote: fc.boolean(),
  checkQuorum: fc.boolean(),
  maxEntriesPerMessage: fc.integer({ min: 1, max: 3 }),
  maxInflightMessages: fc.integer({ min: 1, max: 3 }),
});

interface Node {
  readonly id: NodeId;
  engine: RaftEngine;
  /** The disk: it survives crashes; a restarted node opens a new store over it. */
  store: MemoryLogStore;
  /** A Ready taken and not yet carried out. */
  outstanding: Ready | undefined;
  /** Index the (volatile) state machine has applied; a restart restores it from the snapshot. */
  applied: number;
  /** The configuration as of the snapshot the disk starts with (a snapshot store keeps it). */
  snapshotConfig: ClusterConfig;
  lives: number;
}

/** What the runs explored, to make sure the property is not vacuous. */
const explored = {
  runs: 0,
  leaders: 0,
  committedRuns: 0,
  truncations: 0,
  snapshotsInstalled: 0,
  crashes: 0,
  /** Runs in which a leader committed a configuration it appended, and a transfer completed. */
  configsCommitted: 0,
  transfers: 0,
};

class Interleaving {
  readonly #setup: RunSetup;
  readonly #tuning: Partial<EngineTuning>;
  readonly #config: ClusterConfig;
  readonly nodes: Node[];
  pending: Message[] = [];
  readonly #isolated = new Set<NodeId>();
  readonly checker = new InvariantChecker();
  #proposals = 0;
  committedAnything = false;
  leaderSeen = false;
  configCommitted = false;
  transferred = false;

  constructor(setup: RunSetup) {
    this.#setup = setup;
    this.#tuning = {
      electionTicks: 4,
      heartbeatTicks: 1,
      preVote: setup.preVote,
      checkQuorum: setup.checkQuorum,
      maxEntriesPerMessage: setup.maxEntriesPerMessage,
      maxInflightMessages: setup.maxInflightMessages,
    };
    this.#config = { voters: ALL_IDS.slice(0, setup.membership ? 3 : setup.size) };
    const servers = setup.membership ? ALL_IDS : this.#config.voters;
    this.nodes = servers.map((id) => {
      const store = new MemoryLogStore();
      return {
        id,
        engine: this.#start(id, store, this.#config, 0, 0),
        store,
        outstanding: undefined,
        applied: 0,
        snapshotConfig: this.#config,
        lives: 0,
      };
    });
  }

  #start(
    id: NodeId,
    store: MemoryLogStore,
    config: ClusterConfig,
    applied: number,
    life: number,
  ): RaftEngine {
    const { hardState, snapshot, entries } = store.durable;
    return new RaftEngine({
      id,
      config,
      hardState,
      snapshot,
      entries: [...entries],
      applied,
      random: seededRandom(this.#setup.seed * 97 + ALL_IDS.indexOf(id) * 13 + life),
      tuning: this.#tuning,
    });
  }

  async step(command: Command): Promise<void> {
    switch (command.kind) {
      case 'tick': {
        const n = this.#node(command.node);
        for (let i = 0; i < command.times; i++) n.engine.tick();
        return;
      }
      case 'deliver': {
        if (this.pending.length === 0) return;
        const k = command.message % this.pending.length;
        const message = this.pending[k]!;
        if (!command.duplicate) this.pending.splice(k, 1);
        this.#deliver(message);
        return;
      }
      case 'deliver-burst':
        // Consecutive messages in flight from position `message` on, oldest first.
        for (let i = 0; i < command.count && this.pending.length > 0; i++) {
          await this.step({ kind: 'deliver', message: command.message, duplicate: false });
        }
        return;
      case 'drop':
        if (this.pending.length > 0) this.pending.splice(command.message % this.pending.length, 1);
        return;
      case 'propose': {
        const leader = this.nodes.find((n) => n.engine.status().role === 'leader');
        const target = command.toLeader && leader !== undefined ? leader : this.#node(command.node);
        const payloads: Uint8Array[] = [];
        for (let i = 0; i < command.count; i++) {
          this.#proposals++;
          payloads.push(new Uint8Array([this.#proposals % 256, this.#proposals >> 8]));
        }
        target.engine.propose(payloads);
        return;
      }
      case 'campaign': {
        // Election timeout: tick until the node starts a (pre-)vote.
        const { engine } = this.#node(command.node);
        for (let i = 0; i < 50 && engine.status().role === 'follower'; i++) engine.tick();
        return;
      }
      case 'isolate':
        this.#isolated.add(this.#node(command.node).id);
        return;
      case 'heal':
        this.#isolated.clear();
        return;
      case 'ready':
        this.#takeReady(this.#node(command.node));
        return;
      case 'complete':
        await this.#complete(this.#node(command.node));
        return;
      case 'flush': {
        // A Ready taken by 'ready' is on a slow disk: only 'complete' (or a crash) ends it.
        const n = this.#node(command.node);
        for (let i = 0; i < 10 && this.#takeReady(n); i++) await this.#complete(n);
        return;
      }
      case 'flush-all':
        for (let i = 0; i < this.nodes.length; i++) await this.step({ kind: 'flush', node: i });
        return;
      case 'settle':
        // Rounds of: every node carries out its Readies, then every message in flight arrives.
        for (let round = 0; round < command.rounds; round++) {
          await this.step({ kind: 'flush-all' });
          const inFlight = this.pending;
          this.pending = [];
          for (const message of inFlight) this.#deliver(message);
        }
        return;
      case 'crash': {
        const n = this.#node(command.node);
        const inFlight = n.outstanding;
        // The write being done when the node crashed reached the disk whole, or not at all.
        if (command.keepWrite && inFlight?.write !== undefined)
          await n.store.persist(inFlight.write);
        n.outstanding = undefined;
        n.lives++;
        n.store = new MemoryLogStore({ durable: n.store.durable });
        n.applied = n.store.durable.snapshot.index;
        n.engine = this.#start(n.id, n.store, n.snapshotConfig, n.applied, n.lives);
        this.checker.restarted(n.id);
        explored.crashes++;
        return;
      }
      case 'compact': {
        // Snapshot the state machine at its applied index; drop the log up to there.
        const n = this.#node(command.node);
        const status = n.engine.status();
        if (n.applied < status.firstIndex) return;
        const term = n.engine.entry(n.applied)?.term;
        if (term === undefined) throw new Error(`${n.id} applied ${n.applied} but lacks it`);
        const config = n.engine.configAt(n.applied);
        n.engine.compact({ index: n.applied, term, config });
        n.snapshotConfig = config;
        await n.store.purge({ index: n.applied, term });
        return;
      }
      case 'reconfigure': {
        if (!this.#setup.membership) return;
        const leader = this.nodes.find((n) => n.engine.status().role === 'leader');
        const voters = idsOf(command.voters);
        const learners = idsOf(command.learners).filter((id) => !voters.includes(id));
        leader?.engine.proposeConfigChange(
          {
            voters,
            learners,
            ...(command.autoPromote ? { autoPromote: learners } : {}),
          },
          { mode: command.joint ? 'joint' : 'auto' },
        );
        return;
      }
      case 'transfer': {
        if (!this.#setup.membership) return;
        const leader = this.nodes.find((n) => n.engine.status().role === 'leader');
        if (leader === undefined) return;
        const to = this.#node(command.node).id;
        const voters = leader.engine.status().config.voters;
        if (command.anyTarget) leader.engine.transferLeadership();
        else if (to !== leader.id && voters.includes(to)) {
          leader.engine.transferLeadership({ to });
        }
        return;
      }
      default:
        command satisfies never;
    }
  }

  /** Steps `message` into its addressee; a partition drops it instead. */
  #deliver(message: Message): void {
    if (this.#isolated.has(message.from) || this.#isolated.has(message.to)) return;
    this.nodes.find((n) => n.id === message.to)!.engine.step(message);
  }

  #node(i: number): Node {
    return this.nodes[i % this.nodes.length]!;
  }

  #takeReady(n: Node): boolean {
    if (n.outstanding !== undefined || !n.engine.hasReady()) return false;
    n.outstanding = n.engine.ready();
    // A leader's AppendEntries may leave before its write is durable (thesis 10.2.1).
    this.pending.push(...n.outstanding.earlyMessages);
    return true;
  }

  /** The Ready contract, in order: install the snapshot, persist, send, apply, advance. */
  async #complete(n: Node): Promise<void> {
    const ready = n.outstanding;
    if (ready === undefined) return;
    n.outstanding = undefined;
    if (ready.snapshot !== undefined) {
      n.applied = ready.snapshot.index;
      n.snapshotConfig = ready.snapshot.config;
      explored.snapshotsInstalled++;
    }
    if (ready.write?.truncateFrom !== undefined) explored.truncations++;
    if (ready.write !== undefined) await n.store.persist(ready.write);
    for (const m of ready.messages) {
      if (m.type === 'timeout-now') this.transferred = true;
      // A vote is durable before it is sent (Raft paper, Figure 2): a restart cannot forget it.
      if (m.type === 'vote-response' && m.granted && !m.prevote) {
        const { term, votedFor } = n.store.durable.hardState;
        if (!(term > m.term || (term === m.term && votedFor === m.to))) {
          expect.fail(
            `${n.id} granted its vote to ${m.to} in term ${m.term}; its disk has ${votedFor} in term ${term}`,
          );
        }
      }
    }
    this.pending.push(...ready.messages);
    for (const entry of ready.committed) {
      // Entries reach the state machine once each, in log order, with no gap, and only once
      // they are durable here.
      expect(entry.index, `${n.id} applies entries in order`).toBe(n.applied + 1);
      if (!holds(n.store, entry.index, entry.term)) {
        expect.fail(
          `${n.id} applies entry ${entry.index} (term ${entry.term}) before it is on its disk`,
        );
      }
      this.checker.applied(n.id, entry);
      n.applied = entry.index;
      this.committedAnything = true;
    }
    n.engine.advance(ready);
  }

  /** Safety after every step: Figure 3 via the checker, and the engine's durability claims. */
  check(): void {
    const engines = this.nodes.map((n) => n.engine);
    this.checker.check(engines);
    for (const n of this.nodes) {
      const s = n.engine.status();
      if (s.role === 'leader') this.leaderSeen = true;
      // What the engine counts as persisted (for commitment and acknowledgements) is on disk.
      const disk = n.store.durable;
      const from = Math.max(disk.snapshot.index + 1, s.firstIndex);
      const diskLast = disk.snapshot.index + disk.entries.length;
      if (s.persistedIndex >= from) {
        expect(
          diskLast,
          `${n.id}: persisted index ${s.persistedIndex} beyond the disk`,
        ).toBeGreaterThanOrEqual(s.persistedIndex);
      }
      // A committed entry is durable on a majority of the disks (or covered by their snapshots).
      // With membership changes: on a quorum of the configuration the leader committed it under,
      // which is the one as of the commit index or the latest in its log (Raft paper 6).
      const committed = n.engine.entry(s.commitIndex);
      const judged = !this.#setup.membership || s.role === 'leader';
      if (committed !== undefined && judged) {
        const holders = new Set(
          this.nodes
            .filter((other) => holds(other.store, committed.index, committed.term))
            .map((other) => other.id),
        );
        const configs = [n.engine.configAt(s.commitIndex), s.config];
        if (!configs.some((config) => hasQuorum(config, (id) => holders.has(id)))) {
          expect.fail(
            `${n.id} has commit index ${s.commitIndex} (term ${committed.term}), but only ${[...holders].join(', ') || 'no node'} has it on disk`,
          );
        }
        if (s.role === 'leader' && committed.type === 'config') this.configCommitted = true;
      }
      for (let index = from; index <= s.persistedIndex; index++) {
        const onDisk = disk.entries[index - disk.snapshot.index - 1];
        if (onDisk !== n.engine.entry(index)) {
          expect(
            onDisk,
            `${n.id}: entry ${index} counts as persisted but the disk holds another`,
          ).toBe(n.engine.entry(index));
        }
      }
    }
  }
}

/** Whether the disk holds the entry at `index` with `term`, or a snapshot that covers it. */
function holds(store: MemoryLogStore, index: number, term: number): boolean {
  const { snapshot, entries } = store.durable;
  if (index <= snapshot.index) return true;
  return entries[index - snapshot.index - 1]?.term === term;
}

const replay =
  process.env.TSRAFT_FC_SEED === undefined
    ? undefined
    : {
        seed: Number(process.env.TSRAFT_FC_SEED),
        ...(process.env.TSRAFT_FC_PATH === undefined ? {} : { path: process.env.TSRAFT_FC_PATH }),
      };
const numRuns = Number(process.env.TSRAFT_INTERLEAVING_RUNS ?? 4000);

describe('message interleavings (fast-check)', () => {
  it('keeps Raft safe under any order, loss and duplication of messages, crashes and compaction', async () => {
    await fc.assert(
      fc.asyncProperty(
        setupArb,
        fc.array(commandArb, { minLength: 1, maxLength: 200, size: 'max' }),
        async (setup, commands) => {
          const run = new Interleaving(setup);
          for (const command of commands) {
            await run.step(command);
            run.check();
          }
          explored.runs++;
          if (run.leaderSeen) explored.leaders++;
          if (run.committedAnything) explored.committedRuns++;
          if (run.configCommitted) explored.configsCommitted++;
          if (run.transferred) explored.transfers++;
        },
      ),
      { numRuns, ...replay },
    );
    if (replay !== undefined || numRuns < 1000) return;
    // Not vacuous: leaders were elected and entries committed in a good share of the runs, and
    // the rarer paths (truncation, snapshot installation, crashes) were taken.
    expect(explored.leaders).toBeGreaterThan(explored.runs / 4);
    expect(explored.committedRuns).toBeGreaterThan(explored.runs / 10);
    expect(explored.truncations).toBeGreaterThan(0);
    expect(explored.snapshotsInstalled).toBeGreaterThan(0);
    expect(explored.crashes).toBeGreaterThan(0);
    expect(explored.configsCommitted).toBeGreaterThan(explored.runs / 100);
    expect(explored.transfers).toBeGreaterThan(explored.runs / 100);
  }, 60_000);
});
