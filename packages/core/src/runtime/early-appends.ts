import type { Ready } from '../engine/ready.ts';
import type { HardState } from '../hard-state.ts';
import type { Message } from '../message.ts';

/** The messages of a Ready split by when they may leave: before its write is durable, or after. */
export interface EarlySplit {
  /** May be sent while the write is persisted. */
  readonly early: readonly Message[];
  /** Must wait until the write is durable. */
  readonly afterPersist: readonly Message[];
}

/**
 * Which messages of `ready` a leader may send before its own write is durable (Raft thesis
 * 10.2.1): its AppendEntries. They promise nothing about the leader's own storage; the entries
 * they carry count towards commitment on the leader only once the leader's write is durable (the
 * engine counts the leader at its persisted index), and nothing is applied before it is durable
 * here. A leader that crashes before its write completes leaves entries on followers that no
 * quorum may hold: Raft already handles such entries as any uncommitted ones.
 *
 * An AppendEntries leaves early only when the term it carries is durable: `durable` is this
 * node's hard state as last persisted, and a Ready whose write changes the term or the vote sends
 * everything after the write (a vote must never be cast twice in one term, Raft paper Figure 2).
 * Everything else (acknowledgements, votes, heartbeats, read-index answers) waits for the write,
 * as the Ready contract says. Returns `undefined` when nothing may leave early.
 */
export function splitEarlyAppends(
  ready: Ready,
  durable: Pick<HardState, 'term' | 'votedFor'>,
): EarlySplit | undefined {
  const write = ready.write;
  if (write === undefined || write.snapshot !== undefined || write.truncateFrom !== undefined) {
    return undefined;
  }
  const term = write.hardState?.term ?? durable.term;
  const votedFor = write.hardState === undefined ? durable.votedFor : write.hardState.votedFor;
  if (term !== durable.term || votedFor !== durable.votedFor) return undefined;
  const early: Message[] = [];
  const afterPersist: Message[] = [];
  for (const message of ready.messages) {
    if (message.type === 'append' && message.term === durable.term) early.push(message);
    else afterPersist.push(message);
  }
  return early.length === 0 ? undefined : { early, afterPersist };
}
