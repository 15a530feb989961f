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
 * 2. persist `write` durably (one atomic {@link LogWrite}); `earlyMessages` may be sent at any
 *    point from here on: before the write starts, while it persists, or with `messages`;
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
  /**
   * A leader's AppendEntries that may leave before `write` is durable (Ongaro's thesis 10.2.1),
   * so that the leader's disk write and its followers' overlap. They promise nothing about this
   * server's storage: the engine counts the leader towards a commit only at the index its
   * advanced writes made durable, and hands an entry to be applied only once it is durable here.
   * Only AppendEntries of a term whose term and vote an earlier, advanced write made durable go
   * here (the term they carry is on disk, Figure 2); every other message is in `messages`.
   */
  readonly earlyMessages: readonly Message[];
  readonly committed: readonly LogEntry[];
  readonly reads: readonly ReadResult[];
  /** The hard state after `write` (for the driver's status), whether or not it changed. */
  readonly hardState: HardState;
}
