import type { ClusterConfig } from '../configuration.ts';
import { type HardState, INITIAL_HARD_STATE } from '../hard-state.ts';
import type { LogEntry, LogPosition, NodeId } from '../log-entry.ts';
import type { LogWrite } from '../log-store.ts';
import type { Message, RequestVote } from '../message.ts';
import { seededRandom } from '../random.ts';
import type { EngineTuning } from './engine-options.ts';
import { type EngineStatus, RaftEngine } from './raft-engine.ts';
import type { ReadResult, Ready } from './ready.ts';

/**
 * A hand-driven cluster of engines for scenario tests (CONVENTIONS.md 8). Nothing happens on its
 * own: a test ticks nodes, collects their Ready (`flush`: the write is "persisted" at once on an
 * in-memory disk, the messages join the network), and delivers, holds or drops messages. The
 * network is a list of sent messages; partitions drop messages at delivery.
 *
 * Unless a test asks otherwise, nodes run the algorithm of the Raft paper: no PreVote and no
 * CheckQuorum (those are thesis extensions that their own scenarios turn on).
 */

/** The paper's Raft, without the thesis extensions. */
const PAPER_TUNING: Partial<EngineTuning> = { preVote: false, checkQuorum: false };

/** Entries with the given terms, one per index, starting at `firstIndex`. */
export function entriesOfTerms(terms: readonly number[], firstIndex = 1): LogEntry[] {
  return terms.map((term, i) => ({
    index: firstIndex + i,
    term,
    type: 'command',
    data: new Uint8Array([firstIndex + i]),
  }));
}

/** A RequestVote (not a pre-vote unless `prevote` says so) of `from` for `term`. */
export function voteRequest(
  fields: Omit<RequestVote, 'type' | 'prevote'> & { prevote?: boolean },
): RequestVote {
  return { type: 'vote', prevote: false, ...fields };
}

interface NodeSetup {
  /** Terms of the node's durable log entries, index 1 first. */
  readonly log?: readonly number[];
  /** Default: the last log term, no vote, commit index 0. */
  readonly hardState?: Partial<HardState>;
  readonly tuning?: Partial<EngineTuning>;
}

export interface ClusterSetup {
  readonly voters: readonly NodeId[];
  /** Learners of the initial configuration. */
  readonly learners?: readonly NodeId[];
  /**
   * Servers outside the initial configuration, to be added by a membership change; they start
   * with the initial configuration as their bootstrap configuration.
   */
  readonly others?: readonly NodeId[];
  readonly nodes?: Readonly<Record<NodeId, NodeSetup>>;
  /** Tuning of every node, over the paper's defaults (per-node tuning overrides it). */
  readonly tuning?: Partial<EngineTuning>;
  readonly seed?: number;
}

/** A node's durable state, as its log store would hold it after the writes it was handed. */
export interface Disk {
  hardState: HardState;
  snapshot: LogPosition;
  /** The configuration as of `snapshot` (what a snapshot store would hold with it). */
  config: ClusterConfig;
  entries: LogEntry[];
}

/** Which messages an operation applies to: a predicate, or fields that must all match. */
export type MessageFilter =
  | ((m: Message) => boolean)
  | { readonly type?: Message['type']; readonly from?: NodeId; readonly to?: NodeId };

function matches(filter: MessageFilter | undefined, m: Message): boolean {
  if (filter === undefined) return true;
  if (typeof filter === 'function') return filter(m);
  return (
    (filter.type === undefined || filter.type === m.type) &&
    (filter.from === undefined || filter.from === m.from) &&
    (filter.to === undefined || filter.to === m.to)
  );
}

interface Node {
  engine: RaftEngine;
  readonly disk: Disk;
  readonly readies: Ready[];
  readonly applied: LogEntry[];
  appliedIndex: number;
  readonly reads: ReadResult[];
}

export class Cluster {
  readonly #setup: ClusterSetup;
  readonly #config: ClusterConfig;
  readonly #nodes = new Map<NodeId, Node>();
  readonly #isolated = new Set<NodeId>();
  /** Sent and not yet delivered or dropped, oldest first. */
  pending: Message[] = [];
  /** Every message stepped into an engine, in order. */
  readonly delivered: Message[] = [];

  constructor(setup: ClusterSetup) {
    this.#setup = setup;
    this.#config = {
      voters: setup.voters,
      ...(setup.learners === undefined ? {} : { learners: setup.learners }),
    };
    for (const id of this.#ids) {
      const node = setup.nodes?.[id];
      const entries = entriesOfTerms(node?.log ?? []);
      const disk: Disk = {
        hardState: {
          ...INITIAL_HARD_STATE,
          term: entries.at(-1)?.term ?? 0,
          ...node?.hardState,
        },
        snapshot: { index: 0, term: 0 },
        config: this.#config,
        entries,
      };
      const engine = this.#startEngine(id, disk, 0);
      this.#nodes.set(id, { engine, disk, readies: [], applied: [], appliedIndex: 0, reads: [] });
    }
  }

  /** Every server: voters, learners and others. */
  get #ids(): NodeId[] {
    return [...this.#setup.voters, ...(this.#setup.learners ?? []), ...(this.#setup.others ?? [])];
  }

  /** Creates the engine of `id` from its disk, as a node does when it starts. */
  #startEngine(id: NodeId, disk: Disk, applied: number): RaftEngine {
    return new RaftEngine({
      id,
      config: disk.config,
      hardState: disk.hardState,
      snapshot: disk.snapshot,
      entries: disk.entries,
      applied,
      random: seededRandom((this.#setup.seed ?? 1) * 1000 + this.#ids.indexOf(id)),
      tuning: { ...PAPER_TUNING, ...this.#setup.tuning, ...this.#setup.nodes?.[id]?.tuning },
    });
  }

  #node(id: NodeId): Node {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  engine(id: NodeId): RaftEngine {
    return this.#node(id).engine;
  }

  status(id: NodeId): EngineStatus {
    return this.engine(id).status();
  }

  disk(id: NodeId): Disk {
    return this.#node(id).disk;
  }

  /** Terms of the durable log of `id`, from its first entry after the snapshot. */
  logTerms(id: NodeId): number[] {
    return this.disk(id).entries.map((e) => e.term);
  }

  /** Every Ready `id` has handed out, oldest first. */
  readies(id: NodeId): readonly Ready[] {
    return this.#node(id).readies;
  }

  /** Entries handed to the state machine of `id`, in order. */
  applied(id: NodeId): readonly LogEntry[] {
    return this.#node(id).applied;
  }

  /** Read results `id` has handed out. */
  reads(id: NodeId): readonly ReadResult[] {
    return this.#node(id).reads;
  }

  /** Crashes `id` (losing everything not on its disk) and starts it again. */
  restart(id: NodeId): void {
    const node = this.#node(id);
    this.pending = this.pending.filter((m) => m.to !== id && m.from !== id);
    node.engine = this.#startEngine(id, node.disk, node.appliedIndex);
  }

  /**
   * `id` lost its disk: it starts again with an empty log, no term or vote, and `config` (the
   * initial configuration unless given) as its bootstrap configuration.
   */
  wipe(id: NodeId, config: ClusterConfig = this.#config): void {
    const node = this.#node(id);
    this.pending = this.pending.filter((m) => m.to !== id && m.from !== id);
    node.disk.hardState = INITIAL_HARD_STATE;
    node.disk.snapshot = { index: 0, term: 0 };
    node.disk.config = config;
    node.disk.entries = [];
    node.appliedIndex = 0;
    node.engine = this.#startEngine(id, node.disk, 0);
  }

  /**
   * `id` snapshots its state up to `index` (applied there) and compacts its log, as the node
   * runtime does: the snapshot carries the configuration as of `index`.
   */
  compact(id: NodeId, index: number): void {
    const node = this.#node(id);
    const term = node.engine.entry(index)?.term;
    if (term === undefined) throw new Error(`${id} holds no entry at ${index}`);
    const config = node.engine.configAt(index);
    node.engine.compact({ index, term, config });
    node.disk.snapshot = { index, term };
    node.disk.config = config;
    node.disk.entries = node.disk.entries.filter((e) => e.index > index);
  }

  /** Cuts `ids` off: messages to or from them are dropped when delivered. */
  isolate(...ids: NodeId[]): void {
    for (const id of ids) this.#isolated.add(id);
  }

  heal(): void {
    this.#isolated.clear();
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.engine(id).tick();
  }

  /**
   * Carries out the Ready of each of `ids` (all nodes when none) until it has none: installs the
   * snapshot, sends the early messages, applies the write to the disk, sends the messages,
   * records committed entries and reads, then advances. Returns the Readies handed out.
   */
  flush(...ids: NodeId[]): Ready[] {
    const out: Ready[] = [];
    for (const id of ids.length > 0 ? ids : this.#ids) {
      const node = this.#node(id);
      for (let n = 0; node.engine.hasReady(); n++) {
        if (n > 100) throw new Error(`${id} keeps reporting hasReady() with nothing new to do`);
        const ready = node.engine.ready();
        this.pending.push(...ready.earlyMessages);
        this.complete(id, ready);
        out.push(ready);
      }
    }
    return out;
  }

  /**
   * Carries out the rest of `ready`, a Ready of `id` taken by hand whose early messages the test
   * dealt with: installs the snapshot, applies the write to the disk, sends the messages,
   * records committed entries and reads, then advances.
   */
  complete(id: NodeId, ready: Ready): void {
    const node = this.#node(id);
    if (ready.snapshot !== undefined) {
      node.appliedIndex = ready.snapshot.index;
      node.disk.config = ready.snapshot.config;
    }
    if (ready.write !== undefined) persist(node.disk, ready.write);
    this.pending.push(...ready.messages);
    node.applied.push(...ready.committed);
    const last = ready.committed.at(-1);
    if (last !== undefined) node.appliedIndex = last.index;
    node.reads.push(...ready.reads);
    node.readies.push(ready);
    node.engine.advance(ready);
  }

  /** Delivers the pending messages that match (to isolated nodes: dropped); returns those stepped. */
  deliver(filter?: MessageFilter): Message[] {
    const chosen = this.pending.filter((m) => matches(filter, m));
    this.pending = this.pending.filter((m) => !matches(filter, m));
    const stepped: Message[] = [];
    for (const m of chosen) {
      if (this.#isolated.has(m.from) || this.#isolated.has(m.to)) continue;
      this.engine(m.to).step(m);
      this.delivered.push(m);
      stepped.push(m);
    }
    return stepped;
  }

  /** Removes the pending messages that match, undelivered; returns them. */
  drop(filter?: MessageFilter): Message[] {
    const dropped = this.pending.filter((m) => matches(filter, m));
    this.pending = this.pending.filter((m) => !matches(filter, m));
    return dropped;
  }

  /**
   * Flushes every node and delivers every message, until the network is quiet. Messages that
   * match `hold` stay pending (in flight) instead.
   */
  stabilize(options: { hold?: MessageFilter } = {}): void {
    const { hold } = options;
    const free = (m: Message) => hold === undefined || !matches(hold, m);
    for (let round = 0; ; round++) {
      if (round > 1000) throw new Error('the cluster did not become quiet');
      this.flush();
      if (this.deliver(free).length === 0 && !this.pending.some(free)) return;
    }
  }

  /** Ticks `id` until its election timeout fires and it starts a (pre-)vote. */
  campaign(id: NodeId): void {
    const engine = this.engine(id);
    for (let i = 0; engine.status().role === 'follower'; i++) {
      if (i > 1000) throw new Error(`${id} never timed out`);
      engine.tick();
    }
  }

  /** `id` times out and the cluster runs the election to the end; `id` must win it. */
  elect(id: NodeId): void {
    this.campaign(id);
    this.stabilize();
    const { role, term } = this.status(id);
    if (role !== 'leader') throw new Error(`${id} did not win the election (${role} in ${term})`);
  }
}

/** Applies a write as a log store must (see {@link LogWrite}), checking it continues the log. */
function persist(disk: Disk, write: LogWrite): void {
  if (write.snapshot !== undefined) {
    const s = write.snapshot;
    const keeps = disk.entries.find((e) => e.index === s.index)?.term === s.term;
    disk.entries = keeps ? disk.entries.filter((e) => e.index > s.index) : [];
    disk.snapshot = s;
  }
  const { truncateFrom } = write;
  if (truncateFrom !== undefined) disk.entries = disk.entries.filter((e) => e.index < truncateFrom);
  for (const entry of write.entries ?? []) {
    const expected = (disk.entries.at(-1)?.index ?? disk.snapshot.index) + 1;
    if (entry.index !== expected) {
      throw new Error(`the write appends index ${entry.index} where ${expected} comes next`);
    }
    disk.entries.push(entry);
  }
  if (write.hardState !== undefined) disk.hardState = write.hardState;
}
