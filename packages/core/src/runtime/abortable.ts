import type { CancelTimer, Clock } from './clock.ts';

/**
 * Settles as `promise` does, or rejects with `signal.reason` as soon as `signal` aborts (the
 * work behind `promise` is not cancelled; its outcome is ignored).
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** A signal tied to others and to a deadline; dispose it once the call it guards settled. */
export interface LinkedSignal extends Disposable {
  readonly signal: AbortSignal;
  /** Whether the deadline (not a parent) aborted the signal. */
  readonly timedOut: boolean;
}

/**
 * A signal that aborts when any of `parents` does (with its reason) or, given `timeoutMs`, once
 * the deadline passes (with a `TimeoutError` DOMException). Disposing it detaches it from the
 * parents and clears the timer, so long-lived parents (the node's lifetime) collect no listeners.
 */
export function linkedSignal(options: {
  parents: readonly (AbortSignal | undefined)[];
  timeoutMs?: number;
  /** Measures the deadline. */
  clock: Clock;
}): LinkedSignal {
  const controller = new AbortController();
  const parents = options.parents.filter((parent): parent is AbortSignal => parent !== undefined);
  let timedOut = false;
  let cancelTimer: CancelTimer | undefined;
  const onAbort = (event: Event): void => {
    controller.abort((event.target as AbortSignal).reason);
  };
  const dispose = (): void => {
    cancelTimer?.();
    for (const parent of parents) parent.removeEventListener('abort', onAbort);
  };
  for (const parent of parents) {
    if (parent.aborted) {
      controller.abort(parent.reason);
      break;
    }
    parent.addEventListener('abort', onAbort, { once: true });
  }
  if (!controller.signal.aborted && options.timeoutMs !== undefined) {
    const ms = options.timeoutMs;
    cancelTimer = options.clock.setTimer(() => {
      timedOut = true;
      controller.abort(new DOMException(`the deadline of ${ms} ms passed`, 'TimeoutError'));
    }, ms);
  }
  controller.signal.addEventListener('abort', dispose, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    [Symbol.dispose]: dispose,
  };
}
