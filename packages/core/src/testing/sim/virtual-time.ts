import type { CancelTimer, Clock } from '../../runtime/clock.ts';
import { EventQueue } from './event-queue.ts';

interface Timer {
  readonly callback: () => void;
  readonly owner: VirtualClock | undefined;
  cancelled: boolean;
}

/** Lets every promise continuation queued so far run (a real macrotask runs after them all). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Virtual time for the simulator: one queue of timers, ordered by due time and then by the order
 * they were set, shared by every simulated node. {@link VirtualTime.step} runs the next timer and
 * then every promise continuation it caused before the next, so a run of real `RaftNode`s, whose
 * only sources of time and scheduling are the {@link VirtualClock}s handed out here, is decided
 * by the seed alone.
 */
export class VirtualTime {
  #now = 0;
  readonly #queue = new EventQueue<Timer>();

  /** Virtual milliseconds since the start. */
  get now(): number {
    return this.#now;
  }

  /** Runs `callback` at virtual time `now + ms` (simulation events, not a node's). */
  at(ms: number, callback: () => void): CancelTimer {
    return this.schedule(undefined, callback, ms);
  }

  /**
   * A clock for one process (one life of a node). `wallOffsetMs` is where its wall time stands
   * at virtual time 0: wall clocks of different machines disagree.
   */
  clock(wallOffsetMs = 0): VirtualClock {
    return new VirtualClock(this, wallOffsetMs);
  }

  /** @internal Queues a timer; see {@link VirtualClock}. */
  schedule(owner: VirtualClock | undefined, callback: () => void, ms: number): CancelTimer {
    const timer: Timer = { callback, owner, cancelled: false };
    this.#queue.push(this.#now + Math.max(0, ms), timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /**
   * Runs the next timer not cancelled, whose owner still runs, then lets every continuation it
   * caused run. Returns false when no timer is left.
   */
  async step(): Promise<boolean> {
    for (;;) {
      const next = this.#queue.pop();
      if (next === undefined) return false;
      const timer = next.item;
      if (timer.cancelled || timer.owner?.stopped === true) continue;
      this.#now = next.time;
      timer.callback();
      await settle();
      return true;
    }
  }

  /** Lets every promise continuation queued so far run, without running a timer. */
  settle(): Promise<void> {
    return settle();
  }

  /** Runs timers until virtual time reaches `until` (or none is left). */
  async runUntil(until: number): Promise<void> {
    while (this.#queue.peekTime() !== undefined && (this.#queue.peekTime() as number) <= until) {
      await this.step();
    }
    this.#now = Math.max(this.#now, until);
  }

  /** Runs timers until `promise` settles, and settles as it does; throws past `withinMs`. */
  async runUntilSettled<T>(promise: Promise<T>, withinMs: number): Promise<T> {
    let settled = false;
    const done = promise.finally(() => {
      settled = true;
    });
    done.catch(() => {});
    await this.runUntilTrue(() => settled, withinMs);
    return done;
  }

  /** Runs timers until `condition` holds; throws once virtual time passes `withinMs` from now. */
  async runUntilTrue(condition: () => boolean, withinMs: number): Promise<void> {
    const deadline = this.#now + withinMs;
    await settle();
    while (!condition()) {
      const due = this.#queue.peekTime();
      if (due === undefined || due > deadline || !(await this.step())) {
        throw new Error(`the condition did not hold within ${withinMs} virtual ms`);
      }
    }
  }
}

/**
 * The {@link Clock} of one simulated process. Stopping it is the process dying: its timers never
 * fire, and what it schedules afterwards never runs (a promise awaiting `afterPhase` never
 * settles), so a crashed node's code simply stops where it was.
 */
export class VirtualClock implements Clock {
  readonly #time: VirtualTime;
  readonly #wallOffsetMs: number;
  #stopped = false;

  constructor(time: VirtualTime, wallOffsetMs: number) {
    this.#time = time;
    this.#wallOffsetMs = wallOffsetMs;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** The process dies: nothing it scheduled runs any more. */
  stop(): void {
    this.#stopped = true;
  }

  now(): number {
    return this.#time.now;
  }

  wallTime(): number {
    return this.#wallOffsetMs + this.#time.now;
  }

  setTimer(callback: () => void, ms: number): CancelTimer {
    return this.#time.schedule(this, callback, ms);
  }

  setRepeating(callback: () => void, ms: number): CancelTimer {
    let cancel: CancelTimer = () => {};
    let cancelled = false;
    const fire = (): void => {
      if (cancelled) return;
      cancel = this.#time.schedule(this, fire, ms);
      callback();
    };
    cancel = this.#time.schedule(this, fire, ms);
    return () => {
      cancelled = true;
      cancel();
    };
  }

  afterPhase(): Promise<void> {
    return new Promise((resolve) => {
      this.#time.schedule(this, resolve, 0);
    });
  }
}
