/**
 * Runs async tasks one at a time, in the order they were queued. The log store's contract asks
 * for `persist` and `purge` to be issued one at a time; the node queues both here.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Queues `task`; the promise settles as the task does. A failed task does not stop the queue. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => {});
    return result;
  }

  /** Resolves once every task queued so far has settled. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
