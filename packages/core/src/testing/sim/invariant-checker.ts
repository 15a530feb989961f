import type { EngineStatus } from '../../engine/raft-engine.ts';
import type { LogEntry, NodeId } from '../../log-entry.ts';

/** What the checker reads of a node: its status and its log (a `RaftEngine` is one). */
export interface CheckedNode {
  status(): Pick<EngineStatus, 'id' | 'role' | 'term' | 'commitIndex' | 'firstIndex' | 'lastIndex'>;
  /** The entry at `index` in the node's log, or `undefined` outside it. */
  entry(index: number): LogEntry | undefined;
}

/** A broken Raft safety property, found by {@link InvariantChecker}. */
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
  readonly property: string;
  constructor(property: string, detail: string) {
    super(`${property} violated: ${detail}`);
    this.property = property;
  }
}

interface LeaderRecord {
  readonly id: NodeId;
  readonly term: number;
  /** Terms of the leader's entries, by index, as last seen. */
  terms: Map<number, number>;
}

/**
 * Checks Raft's safety properties (Raft paper, Figure 3) over a set of running engines. The
 * simulator calls {@link check} after every event and {@link applied} for every applied entry:
 * - Election Safety: at most one leader per term, over the whole run;
 * - Leader Append-Only: a leader never overwrites or deletes entries of its log;
 * - Log Matching: two logs with an entry of the same index and term agree up to it;
 * - Leader Completeness: a committed entry is in the log of every leader of a later term;
 * - State Machine Safety: no two nodes apply different entries at one index;
 * plus, within one life of a node, its term and commit index never decrease.
 * Each throws an {@link InvariantViolation} naming the property.
 */
export class InvariantChecker {
  readonly #leaderOfTerm = new Map<number, NodeId>();
  readonly #leaders = new Map<string, LeaderRecord>();
  /** Index -> the entry applied there (by whichever node applied it first). */
  readonly #applied = new Map<number, LogEntry>();
  /** Index -> term of the leader that first committed it. */
  readonly #commitTerm = new Map<number, { term: number; entryTerm: number }>();
  #highestCommitted = 0;
  /** Indexes first seen committed during the current check. */
  readonly #fresh = new Set<number>();
  readonly #termOf = new Map<NodeId, number>();
  readonly #commitOf = new Map<NodeId, number>();

  /**
   * A node restarted from its durable state: a term or commit index it held only in memory is
   * gone (it never sent either before they were durable), so monotonicity restarts from there.
   * The durable term itself only increases: the log stores reject a write that lowers it.
   */
  restarted(id: NodeId): void {
    this.#commitOf.delete(id);
    this.#termOf.delete(id);
  }

  /** State Machine Safety: `entry` was applied on `id`. */
  applied(id: NodeId, entry: LogEntry): void {
    const earlier = this.#applied.get(entry.index);
    if (earlier === undefined) {
      this.#applied.set(entry.index, entry);
    } else if (!sameEntry(earlier, entry)) {
      throw new InvariantViolation(
        'State Machine Safety',
        `${id} applied term ${entry.term} at index ${entry.index}, another node applied term ${earlier.term}`,
      );
    }
  }

  /** The entry applied at `index`, if any node applied one. */
  appliedAt(index: number): LogEntry | undefined {
    return this.#applied.get(index);
  }

  check(engines: readonly CheckedNode[]): void {
    this.#fresh.clear();
    for (const engine of engines) this.#checkNode(engine);
    if (this.#fresh.size > 0) {
      // Commits made in this step must already be in the log of every leader of a later term.
      for (const engine of engines) {
        const s = engine.status();
        if (s.role !== 'leader') continue;
        this.#checkLeaderCompleteness(
          engine,
          (commitTerm, index) => this.#fresh.has(index) && commitTerm < s.term,
        );
      }
    }
    this.#checkLogMatching(engines);
  }

  #checkNode(engine: CheckedNode): void {
    const s = engine.status();
    const lastTerm = this.#termOf.get(s.id) ?? 0;
    if (s.term < lastTerm) {
      throw new InvariantViolation(
        'Monotonic term',
        `${s.id} went from term ${lastTerm} to ${s.term}`,
      );
    }
    this.#termOf.set(s.id, s.term);
    const lastCommit = this.#commitOf.get(s.id) ?? 0;
    if (s.commitIndex < lastCommit) {
      throw new InvariantViolation(
        'Monotonic commit index',
        `${s.id} went from commit index ${lastCommit} to ${s.commitIndex}`,
      );
    }
    this.#commitOf.set(s.id, s.commitIndex);

    if (s.role === 'leader') {
      const holder = this.#leaderOfTerm.get(s.term);
      if (holder !== undefined && holder !== s.id) {
        throw new InvariantViolation(
          'Election Safety',
          `${holder} and ${s.id} both led term ${s.term}`,
        );
      }
      this.#leaderOfTerm.set(s.term, s.id);
      this.#checkLeaderAppendOnly(engine);
      this.#recordCommits(engine);
    }
  }

  #checkLeaderAppendOnly(engine: CheckedNode): void {
    const s = engine.status();
    const key = `${s.id}@${s.term}`;
    let record = this.#leaders.get(key);
    if (record === undefined) {
      record = { id: s.id, term: s.term, terms: new Map() };
      this.#leaders.set(key, record);
      this.#checkLeaderCompleteness(engine, (commitTerm) => commitTerm < s.term);
    }
    for (const [index, term] of record.terms) {
      if (index < s.firstIndex) {
        record.terms.delete(index);
        continue;
      }
      const now = engine.entry(index)?.term;
      if (now !== term) {
        throw new InvariantViolation(
          'Leader Append-Only',
          `leader ${s.id} of term ${s.term} had term ${term} at index ${index}, now ${now ?? 'nothing'}`,
        );
      }
    }
    for (
      let index = Math.max(s.firstIndex, maxKey(record.terms) + 1);
      index <= s.lastIndex;
      index++
    ) {
      record.terms.set(index, engine.entry(index)?.term ?? 0);
    }
  }

  /** Records what a leader committed, and checks every later-term leader holds it. */
  #recordCommits(engine: CheckedNode): void {
    const s = engine.status();
    if (s.commitIndex <= this.#highestCommitted) return;
    const from = Math.max(this.#highestCommitted + 1, s.firstIndex);
    for (let index = from; index <= s.commitIndex; index++) {
      const entry = engine.entry(index);
      if (entry === undefined) continue;
      this.#commitTerm.set(index, { term: s.term, entryTerm: entry.term });
      this.#fresh.add(index);
    }
    this.#highestCommitted = s.commitIndex;
  }

  /** Leader Completeness for one leader, over the commits `relevant` selects by commit term. */
  #checkLeaderCompleteness(
    engine: CheckedNode,
    relevant: (commitTerm: number, index: number) => boolean,
  ): void {
    const s = engine.status();
    for (const [index, { term, entryTerm }] of this.#commitTerm) {
      if (!relevant(term, index) || index < s.firstIndex) continue;
      const held = engine.entry(index)?.term;
      if (held !== entryTerm) {
        throw new InvariantViolation(
          'Leader Completeness',
          `leader ${s.id} of term ${s.term} lacks index ${index} (term ${entryTerm}) committed in term ${term}; it holds ${held ?? 'nothing'}`,
        );
      }
    }
  }

  #checkLogMatching(engines: readonly CheckedNode[]): void {
    for (let a = 0; a < engines.length; a++) {
      for (let b = a + 1; b < engines.length; b++) {
        matchLogs(engines[a]!, engines[b]!);
      }
    }
  }
}

/** Log Matching (Raft paper 5.3) for two logs, over the range both hold in memory. */
function matchLogs(a: CheckedNode, b: CheckedNode): void {
  const sa = a.status();
  const sb = b.status();
  const low = Math.max(sa.firstIndex, sb.firstIndex);
  let index = Math.min(sa.lastIndex, sb.lastIndex);
  while (index >= low && a.entry(index)?.term !== b.entry(index)?.term) index--;
  for (; index >= low; index--) {
    const ea = a.entry(index);
    const eb = b.entry(index);
    if (ea === undefined || eb === undefined || !sameEntry(ea, eb)) {
      throw new InvariantViolation(
        'Log Matching',
        `${sa.id} and ${sb.id} share a later entry but differ at index ${index}`,
      );
    }
  }
}

function sameEntry(a: LogEntry, b: LogEntry): boolean {
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type) return false;
  if (a.data === b.data) return true;
  if (a.data.byteLength !== b.data.byteLength) return false;
  return a.data.every((byte, i) => byte === b.data[i]);
}

function maxKey(map: ReadonlyMap<number, number>): number {
  let max = 0;
  for (const key of map.keys()) if (key > max) max = key;
  return max;
}
