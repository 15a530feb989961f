import type { Clock } from './clock.ts';

/**
 * Deadlines for the many small fire-and-forget requests a node sends (Raft messages): instead of
 * a timer and a signal per request, requests started within the same quarter of `timeoutMs`
 * share one signal. Each request so gets a deadline between 0.75 and 1 times `timeoutMs`, at
 * the cost of one timer per quarter. The signal also aborts when `parent` does.
 */
export class SharedDeadline {
  readonly #parent: AbortSignal;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  #signal: AbortSignal | undefined;
  #createdAt = 0;

  constructor(parent: AbortSignal, timeoutMs: number, clock: Clock) {
    this.#parent = parent;
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
  }

  /** A signal that aborts at most `timeoutMs` from now, and no sooner than 0.75 times it. */
  signal(): AbortSignal {
    const now = this.#clock.now();
    if (this.#signal === undefined || now - this.#createdAt > this.#timeoutMs / 4) {
      this.#signal = this.#create();
      this.#createdAt = now;
    }
    return this.#signal;
  }

  #create(): AbortSignal {
    const controller = new AbortController();
    if (this.#parent.aborted) {
      controller.abort(this.#parent.reason);
      return controller.signal;
    }
    const onParentAbort = (): void => controller.abort(this.#parent.reason);
    this.#parent.addEventListener('abort', onParentAbort, { once: true });
    const ms = this.#timeoutMs;
    // A pending deadline must not keep the process alive after the node closed: weak.
    this.#clock.setTimer(
      () => {
        this.#parent.removeEventListener('abort', onParentAbort);
        controller.abort(new DOMException(`the deadline of ${ms} ms passed`, 'TimeoutError'));
      },
      ms,
      { weak: true },
    );
    return controller.signal;
  }
}
