import type { HardState } from '../hard-state.ts';
import type { LogEntry, NodeId } from '../log-entry.ts';
import type { LogWrite } from '../log-store.ts';
import type { Message, SnapshotMeta } from '../message.ts';

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** Role, term and known leader: changes are reported so the node can raise events. */
export interface SoftState {
  readonly role: Role;
  readonly term: number;
  readonly leaderId: NodeId | null;
}

/** A linearizable read whose read index is known, or that could not be confirmed. */
export type ReadResult =
  | { readonly id: string; readonly index: number }
  | { readonly id: string; readonly error: 'not-leader' | 'leadership-lost' };

/**
 * A batch of work the engine hands to its driver. The driver must, in this order:
 * 1. install `snapshot` (restore the state machine from the received data) if present;
 * 2. persist `write` durably (one atomic {@link LogWrite});
 * 3. then, and only then, send `messages` (votes and acknowledgements must not precede the
 *    durable state they promise, Raft paper Figure 2);
 * 4. hand `committed` to the apply loop, and serve `reads` once applied up to their index;
 * 5. call `engine.advance(ready)`.
 */
export interface Ready {
  readonly softState: SoftState | undefined;
  readonly snapshot: SnapshotMeta | undefined;
  readonly write: LogWrite | undefined;
  readonly messages: readonly Message[];
  readonly committed: readonly LogEntry[];
  readonly reads: readonly ReadResult[];
  /** The hard state after `write` (for the driver's status), whether or not it changed. */
  readonly hardState: HardState;
}
