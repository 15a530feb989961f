import type { LogEntry, LogPosition, NodeId } from '../../log-entry.ts';
import { InvariantViolation } from './invariant-checker.ts';

/** A node at the end of a run: how far it applied its log. */
export interface AppliedNode {
  readonly id: NodeId;
  readonly appliedIndex: number;
}

/**
 * Checks that the cluster keeps what it acknowledged (Raft paper 5.4: a committed entry is never
 * lost or changed): every write a client was told committed must, at the end of a run, be the
 * entry applied at its index and be applied on every member of the final configuration. A
 * violation throws an {@link InvariantViolation} of the property `Durability`.
 */
export class DurabilityChecker {
  /** Index -> term of the acknowledged entry there. */
  readonly #acknowledged = new Map<number, number>();

  /** Writes acknowledged so far. */
  get count(): number {
    return this.#acknowledged.size;
  }

  /** A client was told that the write at `position` committed. */
  acknowledged(position: LogPosition): void {
    const earlier = this.#acknowledged.get(position.index);
    if (earlier !== undefined && earlier !== position.term) {
      throw new InvariantViolation(
        'Durability',
        `index ${position.index} was acknowledged in term ${earlier} and again in term ${position.term}`,
      );
    }
    this.#acknowledged.set(position.index, position.term);
  }

  /**
   * At the end of a run. `appliedAt(index)` is the entry the cluster applied at `index` (as
   * `InvariantChecker.appliedAt`); `members` are the final configuration's nodes.
   */
  check(appliedAt: (index: number) => LogEntry | undefined, members: readonly AppliedNode[]): void {
    for (const [index, term] of this.#acknowledged) {
      const applied = appliedAt(index);
      if (applied?.term !== term) {
        throw new InvariantViolation(
          'Durability',
          `the write acknowledged at index ${index} (term ${term}) is not the applied entry, which is ${applied === undefined ? 'missing' : `of term ${applied.term}`}`,
        );
      }
      for (const member of members) {
        if (member.appliedIndex < index) {
          throw new InvariantViolation(
            'Durability',
            `the write acknowledged at index ${index} is not applied on ${member.id}, which applied up to ${member.appliedIndex}`,
          );
        }
      }
    }
  }
}
