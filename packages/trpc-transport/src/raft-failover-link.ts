import type { TRPCLink } from '@trpc/client';
import type { AnyTRPCRouter } from '@trpc/server';
import { observable } from '@trpc/server/observable';
import type { NodeId } from '@tsraft/core';
import { raftCallFailure } from './raft-client-error.ts';
import { leaderFromContext } from './raft-leader-header.ts';

/** Options of {@link raftFailoverLink}. */
export interface RaftFailoverLinkOptions<TRouter extends AnyTRPCRouter> {
  /** The cluster's nodes: node id to the URL of its tRPC app (what `link` is given). */
  readonly nodes: Readonly<Record<NodeId, string>>;
  /** Makes the terminating link of one node, e.g. `(url) => httpLink({ url })`. */
  readonly link: (url: string) => TRPCLink<TRouter>;
  /** The node to start with. Default: the first of `nodes`. */
  readonly initial?: NodeId;
}

/**
 * A terminating link that sends each call to one node of the cluster at a time, and moves on
 * when that node cannot serve, or when it names another node as the leader:
 *
 * - to the leader, when an answer names one among `nodes` (the `x-tsraft-leader` header the
 *   server's `createRaftProcedures(...).responseMeta` sets, or an error's
 *   `data.raft.leaderHint`), which saves the follower's forwarding hop on every later call: a
 *   client that starts at a follower moves after its first answer;
 * - to the next node, when no answer came (the node is down or unreachable; a call the client
 *   aborted counts as such), when the node is closed or restarting (`data.raft.tryAnotherNode`),
 *   or when it knows no leader (it may be cut off from the majority): `not-leader` or
 *   `read-unavailable` without a leader hint. A node answers so once its `leaderWaitMs` passed
 *   without a leader (0 makes it answer at once), or, for a mutation, once the plugin's
 *   `proposeTimeoutMs` passed while it waited for one (nothing was proposed). A
 *   `read-unavailable` that names a leader moves to it; one that names this node (a leader that
 *   could not confirm its leadership in time) stays: such a leader steps down within an election
 *   timeout and then answers without a hint.
 *
 * It never retries by itself: put {@link raftSessionLink} before it, and each retry goes to the
 * node chosen after the last failure.
 */
export function raftFailoverLink<TRouter extends AnyTRPCRouter>(
  options: RaftFailoverLinkOptions<TRouter>,
): TRPCLink<TRouter> {
  const ids = Object.keys(options.nodes);
  if (ids.length === 0) throw new TypeError('raftFailoverLink needs at least one node');
  let current = options.initial ?? (ids[0] as NodeId);
  if (!ids.includes(current)) throw new TypeError(`initial node "${current}" is not in nodes`);

  return (runtime) => {
    const links = new Map(
      ids.map((id) => [id, options.link(options.nodes[id] as string)(runtime)] as const),
    );
    const moveOn = (from: NodeId, error: unknown): void => {
      if (current !== from) return; // another call already moved on
      const failure = raftCallFailure(error);
      const hint = failure.raft?.leaderHint;
      if (hint !== undefined && hint !== null && hint !== from && links.has(hint)) {
        current = hint;
      } else if (
        failure.noAnswer ||
        failure.raft?.tryAnotherNode === true ||
        failure.raft?.kind === 'closed' ||
        ((failure.raft?.kind === 'not-leader' || failure.raft?.kind === 'read-unavailable') &&
          failure.raft.leaderHint === null)
      ) {
        current = ids[(ids.indexOf(from) + 1) % ids.length] as NodeId;
      }
    };
    /** An answer of `from` named `leader`: later calls go there (a call that moved on wins). */
    const follow = (from: NodeId, leader: string | undefined): void => {
      if (leader !== undefined && current === from && leader !== from && links.has(leader)) {
        current = leader;
      }
    };
    return ({ op }) =>
      observable((observer) => {
        const target = current;
        const link = links.get(target);
        if (link === undefined) throw new Error(`no link for node "${target}"`);
        const subscription = link({
          op,
          next: () => {
            throw new Error('the link of raftFailoverLink must be a terminating link');
          },
        }).subscribe({
          next: (envelope) => {
            follow(target, leaderFromContext(envelope.context));
            observer.next(envelope);
          },
          complete: () => observer.complete(),
          error: (error) => {
            moveOn(target, error);
            observer.error(error);
          },
        });
        return () => subscription.unsubscribe();
      });
  };
}
