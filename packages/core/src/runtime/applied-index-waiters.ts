interface Waiter {
  readonly index: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Callers waiting until the state machine has applied up to an index (linearizable reads). */
export class AppliedIndexWaiters {
  #applied: number;
  #waiters: Waiter[] = [];

  constructor(applied: number) {
    this.#applied = applied;
  }

  get applied(): number {
    return this.#applied;
  }

  /** Resolves once the applied index reaches `index`; `signal` abandons the wait. */
  wait(index: number, signal?: AbortSignal): Promise<void> {
    if (index <= this.#applied) return Promise.resolve();
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters = this.#waiters.filter((waiter) => waiter !== entry);
        reject(signal?.reason);
      };
      const entry: Waiter = {
        index,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      this.#waiters.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The state machine has applied up to `applied`: releases the waiters it satisfies. */
  advance(applied: number): void {
    if (applied <= this.#applied) return;
    this.#applied = applied;
    const ready = this.#waiters.filter((waiter) => waiter.index <= applied);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((waiter) => waiter.index > applied);
    for (const waiter of ready) waiter.resolve();
  }

  failAll(error: unknown): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }
}
