/**
 * Calls waiting until a condition on the node's state holds, checked at each observation (the
 * node observes after every Ready it carries out and every tick).
 */
export class ConditionWaiters {
  readonly #waiters = new Set<() => boolean>();

  /**
   * Resolves with what `check` returns once it returns something other than `undefined`, and
   * rejects with what it throws; `check` runs now and at each {@link observe}. `signal`
   * abandons the wait, rejecting with its reason.
   */
  until<T>(signal: AbortSignal, check: () => T | undefined): Promise<T> {
    signal.throwIfAborted();
    return new Promise<T>((resolve, reject) => {
      const waiter = (): boolean => {
        let outcome: T | undefined;
        try {
          outcome = check();
        } catch (error) {
          settle();
          reject(error);
          return true;
        }
        if (outcome === undefined) return false;
        settle();
        resolve(outcome);
        return true;
      };
      const onAbort = (): void => {
        settle();
        reject(signal.reason);
      };
      const settle = (): void => {
        this.#waiters.delete(waiter);
        signal.removeEventListener('abort', onAbort);
      };
      if (waiter()) return;
      this.#waiters.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Checks every waiting condition. */
  observe(): void {
    for (const waiter of this.#waiters) waiter();
  }
}
