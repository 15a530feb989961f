/** Cancels a timer set with a {@link Clock}; calling it again, or after the timer fired, does nothing. */
export type CancelTimer = () => void;

/**
 * Where a node and a supervisor take their time and scheduling from. The default,
 * {@link realClock}, is the process's own; the simulator gives each node a virtual one, so that a
 * run of real nodes is decided by its seed alone.
 *
 * Contract: callbacks run on their own (never inside the call that set them), in the order of
 * their due times, and not at all once cancelled.
 */
export interface Clock {
  /** Monotonic milliseconds (any origin): deadlines, timeouts and ticks are measured on it. */
  now(): number;
  /** Milliseconds since the Unix epoch: the timestamps a leader stamps on commands. */
  wallTime(): number;
  /**
   * Runs `callback` once, `ms` from now. With `weak`, the timer does not keep the process alive
   * (a real clock unrefs it).
   */
  setTimer(callback: () => void, ms: number, options?: { weak?: boolean }): CancelTimer;
  /** Runs `callback` every `ms` until cancelled. */
  setRepeating(callback: () => void, ms: number): CancelTimer;
  /**
   * Resolves once the current phase of the event loop has run, so that every input that arrives
   * in it (each I/O callback and timer of this pass) is seen by what runs after.
   */
  afterPhase(): Promise<void>;
}

/** The process's clock: `performance.now`, `Date.now`, `setTimeout`, `setInterval`, `setImmediate`. */
export const realClock: Clock = Object.freeze({
  now: () => performance.now(),
  wallTime: () => Date.now(),
  setTimer(callback: () => void, ms: number, options?: { weak?: boolean }): CancelTimer {
    const timer = setTimeout(callback, ms);
    if (options?.weak === true) timer.unref();
    return () => clearTimeout(timer);
  },
  setRepeating(callback: () => void, ms: number): CancelTimer {
    const timer = setInterval(callback, ms);
    return () => clearInterval(timer);
  },
  afterPhase: () => new Promise<void>((resolve) => setImmediate(resolve)),
});
