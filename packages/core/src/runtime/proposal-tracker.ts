import { ProposalDroppedError } from '../errors.ts';
import type { CommandResult } from '../state-machine.ts';

interface PendingProposal<Result> {
  readonly term: number;
  readonly resolve: (result: CommandResult<Result>) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The proposals this node appended as leader and still waits on, keyed by the (index, term) of
 * their entry. A proposal is answered when the entry at its index is applied here: with the
 * state machine's result if the applied entry has the proposal's term, or with
 * {@link ProposalDroppedError} if another leader's entry took that index (Raft paper 5.3: the
 * entry was overwritten, so the command did not take effect under this proposal).
 */
export class ProposalTracker<Result> {
  readonly #byIndex = new Map<number, PendingProposal<Result>>();

  get size(): number {
    return this.#byIndex.size;
  }

  /**
   * Waits for the entry at (index, term). `signal` abandons the wait (rejecting with its
   * reason); the entry may still commit and apply.
   */
  add(index: number, term: number, signal?: AbortSignal): Promise<CommandResult<Result>> {
    const previous = this.#byIndex.get(index);
    if (previous !== undefined) {
      this.#byIndex.delete(index);
      previous.reject(
        new ProposalDroppedError(
          `the entry at index ${index} of term ${previous.term} was replaced by one of term ${term}`,
        ),
      );
    }
    return new Promise<CommandResult<Result>>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.#byIndex.get(index) === pending) this.#byIndex.delete(index);
        reject(signal?.reason);
      };
      const done = (): void => signal?.removeEventListener('abort', onAbort);
      const pending: PendingProposal<Result> = {
        term,
        resolve: (result) => {
          done();
          resolve(result);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
      this.#byIndex.set(index, pending);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The entry at (index, term) was applied with `result`. */
  applied(index: number, term: number, result: CommandResult<Result> | undefined): void {
    const pending = this.#byIndex.get(index);
    if (pending === undefined) return;
    this.#byIndex.delete(index);
    if (pending.term !== term) {
      pending.reject(
        new ProposalDroppedError(
          `the proposal's entry at index ${index} (term ${pending.term}) was overwritten by an entry of term ${term}`,
        ),
      );
    } else if (result === undefined) {
      pending.reject(
        new ProposalDroppedError(`the state machine returned no result for entry ${index}`),
      );
    } else {
      pending.resolve(result);
    }
  }

  /** The log was cut at `from`: proposals at and after it were overwritten (Raft paper 5.3). */
  truncatedFrom(from: number): void {
    for (const [index, pending] of this.#byIndex) {
      if (index < from) continue;
      this.#byIndex.delete(index);
      pending.reject(
        new ProposalDroppedError(
          `the proposal's entry at index ${index} (term ${pending.term}) was removed by a new leader`,
        ),
      );
    }
  }

  /**
   * A snapshot from the leader replaced the log up to `upTo`: whether the proposals there took
   * effect cannot be told here. A retry with the same client session is safe.
   */
  replacedBySnapshot(upTo: number): void {
    for (const [index, pending] of this.#byIndex) {
      if (index > upTo) continue;
      this.#byIndex.delete(index);
      pending.reject(
        new ProposalDroppedError(
          `a snapshot from the leader replaced the log through index ${upTo}; the outcome of the proposal at ${index} is unknown, retry with its client session`,
        ),
      );
    }
  }

  /** Rejects the pending proposals at and after `from` with `error`. */
  failFrom(from: number, error: unknown): void {
    for (const [index, pending] of this.#byIndex) {
      if (index < from) continue;
      this.#byIndex.delete(index);
      pending.reject(error);
    }
  }

  /** Rejects every pending proposal with `error`. */
  failAll(error: unknown): void {
    const pending = [...this.#byIndex.values()];
    this.#byIndex.clear();
    for (const proposal of pending) proposal.reject(error);
  }
}
