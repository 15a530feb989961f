import { describe, expect, it } from 'vitest';
import type { Role } from '../../engine/ready.ts';
import type { LogEntry, NodeId } from '../../log-entry.ts';
import { type CheckedNode, InvariantChecker, InvariantViolation } from './invariant-checker.ts';

/** A node as the checker sees it, set by hand to whatever state a test needs. */
class NodeState implements CheckedNode {
  readonly id: NodeId;
  role: Role = 'follower';
  term = 0;
  commitIndex = 0;
  firstIndex = 1;
  /** The log from `firstIndex` on. */
  log: LogEntry[] = [];

  constructor(id: NodeId) {
    this.id = id;
  }

  status() {
    const { id, role, term, commitIndex, firstIndex } = this;
    return { id, role, term, commitIndex, firstIndex, lastIndex: firstIndex + this.log.length - 1 };
  }

  entry(index: number): LogEntry | undefined {
    return this.log[index - this.firstIndex];
  }

  /** Replaces the log by entries of these terms, from index 1. */
  holds(...terms: number[]): this {
    this.log = terms.map((term, i) => entryAt(i + 1, term));
    return this;
  }

  leads(term: number): this {
    this.role = 'leader';
    this.term = term;
    return this;
  }

  follows(term: number): this {
    this.role = 'follower';
    this.term = term;
    return this;
  }
}

function entryAt(index: number, term: number, byte = index): LogEntry {
  return { index, term, type: 'command', data: new Uint8Array([byte]) };
}

/** The property `run` reports broken, or `undefined` when it reports nothing. */
function violated(run: () => void): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (error instanceof InvariantViolation) return error.property;
    throw error;
  }
}

describe('InvariantChecker', () => {
  it('accepts a valid run: leaders of rising terms, a log that grows and commits, a follower that catches up', () => {
    const checker = new InvariantChecker();
    const [a, b, c] = [new NodeState('a'), new NodeState('b'), new NodeState('c')];
    const nodes = [a, b, c];
    a.leads(1).holds(1, 1);
    b.follows(1).holds(1);
    c.follows(1);
    checker.check(nodes);
    a.commitIndex = 2;
    b.holds(1, 1);
    checker.check(nodes);
    // a crashes; b wins term 2 with the committed entries and appends its own.
    a.follows(1);
    b.leads(2).holds(1, 1, 2);
    b.commitIndex = 2;
    c.follows(2).holds(1);
    checker.check(nodes);
    c.holds(1, 1, 2);
    b.commitIndex = 3;
    c.commitIndex = 3;
    checker.check(nodes);
    for (const node of nodes) {
      for (const entry of node.log.slice(0, node.commitIndex)) checker.applied(node.id, entry);
    }
    expect(checker.appliedAt(3)).toEqual(entryAt(3, 2));
  });

  it('reports two leaders of one term (Election Safety), at once or one after the other', () => {
    const atOnce = new InvariantChecker();
    expect(
      violated(() => atOnce.check([new NodeState('a').leads(2), new NodeState('b').leads(2)])),
    ).toBe('Election Safety');
    const inTurn = new InvariantChecker();
    const [a, b] = [new NodeState('a').leads(2), new NodeState('b').follows(2)];
    inTurn.check([a, b]);
    a.follows(2);
    b.leads(2);
    expect(violated(() => inTurn.check([a, b]))).toBe('Election Safety');
  });

  it('reports a leader that overwrites or deletes one of its entries (Leader Append-Only)', () => {
    for (const change of [
      (leader: NodeState) => leader.holds(1, 2, 1),
      (leader: NodeState) => leader.holds(1, 2),
    ]) {
      const checker = new InvariantChecker();
      const leader = new NodeState('a').leads(2).holds(1, 2, 2);
      checker.check([leader]);
      change(leader);
      expect(violated(() => checker.check([leader]))).toBe('Leader Append-Only');
    }
  });

  it('reports two logs that share an entry but differ before it (Log Matching)', () => {
    const checker = new InvariantChecker();
    const a = new NodeState('a').follows(2).holds(1, 1, 2);
    const b = new NodeState('b').follows(2).holds(1, 2, 2);
    expect(violated(() => checker.check([a, b]))).toBe('Log Matching');
    // The same terms, but other data at one index.
    const c = new NodeState('c').follows(2).holds(1, 1, 2);
    c.log[0] = entryAt(1, 1, 99);
    expect(violated(() => new InvariantChecker().check([a, c]))).toBe('Log Matching');
    // Logs that differ only after their last common entry are fine (an uncommitted suffix).
    const d = new NodeState('d').follows(2).holds(1, 1, 1);
    expect(violated(() => new InvariantChecker().check([a, d]))).toBeUndefined();
  });

  it('reports a leader of a later term that lacks a committed entry (Leader Completeness)', () => {
    const checker = new InvariantChecker();
    const a = new NodeState('a').leads(2).holds(1, 2);
    const b = new NodeState('b').follows(2).holds(1, 2);
    checker.check([a, b]);
    a.commitIndex = 2;
    checker.check([a, b]);
    // b loses the committed entry, as a store that forgets an acknowledged write, and is elected.
    a.follows(3);
    b.leads(3).holds(1);
    expect(violated(() => checker.check([a, b]))).toBe('Leader Completeness');
  });

  it('reports a committed entry replaced under a later leader (Leader Completeness)', () => {
    const checker = new InvariantChecker();
    const a = new NodeState('a').leads(2).holds(1, 2);
    checker.check([a]);
    a.commitIndex = 2;
    checker.check([a]);
    const b = new NodeState('b').leads(3).holds(1, 3);
    a.follows(3);
    expect(violated(() => checker.check([a, b]))).toBe('Leader Completeness');
  });

  it('reports two nodes applying different entries at one index (State Machine Safety)', () => {
    const checker = new InvariantChecker();
    checker.applied('a', entryAt(1, 1));
    checker.applied('b', entryAt(1, 1));
    expect(violated(() => checker.applied('c', entryAt(1, 2)))).toBe('State Machine Safety');
    expect(violated(() => checker.applied('c', entryAt(1, 1, 7)))).toBe('State Machine Safety');
  });

  it('reports a term or commit index that goes back within one life, not across a restart', () => {
    const checker = new InvariantChecker();
    const a = new NodeState('a').follows(3);
    a.holds(1, 2, 3);
    a.commitIndex = 3;
    checker.check([a]);
    a.commitIndex = 2;
    expect(violated(() => checker.check([a]))).toBe('Monotonic commit index');
    a.commitIndex = 3;
    a.term = 2;
    expect(violated(() => checker.check([a]))).toBe('Monotonic term');
    // A commit index held only in memory is gone after a restart.
    checker.restarted('a');
    a.term = 3;
    a.commitIndex = 0;
    expect(violated(() => checker.check([a]))).toBeUndefined();
  });
});
