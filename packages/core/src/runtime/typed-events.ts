import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.ts';

type Listener<Args extends unknown[]> = (...args: Args) => void;

/**
 * A typed event emitter for the runtime's public events. A listener that throws is logged and
 * never disturbs the emitter (the consensus loop emits from inside its own work).
 */
export class TypedEvents<Events extends { [E in keyof Events]: unknown[] }> {
  readonly #emitter = new EventEmitter();
  readonly #logger: () => Logger;

  /** `logger` is read at each failure, so the owner may set its logger after construction. */
  constructor(logger: () => Logger) {
    this.#logger = logger;
  }

  on<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): void {
    this.#emitter.on(event, listener as Listener<unknown[]>);
  }

  once<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): void {
    this.#emitter.once(event, listener as Listener<unknown[]>);
  }

  off<E extends keyof Events & string>(event: E, listener: Listener<Events[E]>): void {
    this.#emitter.off(event, listener as Listener<unknown[]>);
  }

  emit<E extends keyof Events & string>(event: E, ...args: Events[E]): void {
    try {
      this.#emitter.emit(event, ...args);
    } catch (error) {
      this.#logger().warn({ event, err: error }, 'an event listener threw');
    }
  }
}
