import type { RaftNodeEvents } from './raft-node-events.ts';

/**
 * The events a {@link RaftSupervisor} emits: those of its current node, re-emitted (`fatal` once
 * per incarnation that stops on a fatal error), and its own.
 */
export interface RaftSupervisorEvents extends RaftNodeEvents {
  /** A start of a replacement node failed; the next try comes after `retryInMs`. */
  'restart-failed': [
    event: { readonly attempt: number; readonly error: Error; readonly retryInMs: number },
  ];
  /** A replacement node runs again, `downtimeMs` after the previous one stopped. */
  recovered: [
    event: { readonly incarnation: number; readonly attempts: number; readonly downtimeMs: number },
  ];
}

export type RaftSupervisorEventName = keyof RaftSupervisorEvents;
