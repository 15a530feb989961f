import type { ReadResult } from '../engine/ready.ts';
import { ReadUnavailableError } from '../errors.ts';

interface PendingReadRequest {
  /** The id the engine knows the read by; a read asked anew gets a new one. */
  id: string;
  readonly resolve: (index: number) => void;
  readonly reject: (error: unknown) => void;
}

/** Linearizable reads waiting for the engine to give their read index (thesis 6.4). */
export class ReadRequests {
  readonly #pending = new Map<string, PendingReadRequest>();

  /** Waits for the read index of read `id`; `signal` abandons the wait. */
  add(id: string, signal: AbortSignal): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const pending: PendingReadRequest = {
        id,
        resolve: (index) => {
          done();
          resolve(index);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
      const onAbort = (): void => {
        this.#pending.delete(pending.id);
        reject(signal.reason);
      };
      const done = (): void => {
        this.#pending.delete(pending.id);
        signal.removeEventListener('abort', onAbort);
      };
      this.#pending.set(id, pending);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The read waiting under `id` waits under `next` from now on (it is asked anew). */
  rename(id: string, next: string): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    pending.id = next;
    this.#pending.set(next, pending);
  }

  /** Answers a read with the engine's result; unknown ids (abandoned reads) are ignored. */
  settle(result: ReadResult): void {
    const pending = this.#pending.get(result.id);
    if (pending === undefined) return;
    if ('index' in result) {
      pending.resolve(result.index);
    } else {
      pending.reject(
        new ReadUnavailableError(
          result.error === 'not-leader'
            ? 'no leader could confirm the read index; retry shortly'
            : 'leadership changed before the read index was confirmed; retry',
        ),
      );
    }
  }

  failAll(error: unknown): void {
    for (const pending of [...this.#pending.values()]) pending.reject(error);
  }
}
