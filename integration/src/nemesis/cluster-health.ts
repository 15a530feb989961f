import { setTimeout as sleep } from 'node:timers/promises';
import type { NemesisCluster } from './nemesis-cluster.ts';
import type { NemesisNodeStatus } from './node/nemesis-app.ts';

/** How often the waits below poll the nodes' statuses. */
const POLL_MS = 50;

/** The node that leads with a majority of the cluster following it in its term, if any. */
export function agreedLeader(
  statuses: ReadonlyMap<string, NemesisNodeStatus>,
  clusterSize: number,
): NemesisNodeStatus | undefined {
  for (const status of statuses.values()) {
    if (status.state !== 'running' || status.role !== 'leader') continue;
    let followers = 0;
    for (const other of statuses.values()) {
      if (other.state === 'running' && other.leaderId === status.id && other.term === status.term) {
        followers++;
      }
    }
    if (followers * 2 > clusterSize) return status;
  }
  return undefined;
}

/** Waits until a majority follows one leader; its status. Rejects after `timeoutMs`. */
export async function waitForLeader(
  cluster: NemesisCluster,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<NemesisNodeStatus> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    options.signal?.throwIfAborted();
    const leader = agreedLeader(await cluster.statuses(), cluster.ids.length);
    if (leader !== undefined) return leader;
    if (performance.now() > deadline) {
      throw new Error(`no leader a majority follows within ${options.timeoutMs} ms`);
    }
    await sleep(POLL_MS);
  }
}

/** How the cluster came back after a fault was healed. */
export interface Recovery {
  /** From the heal until a leader a majority follows. */
  readonly leaderMs: number;
  /**
   * From the heal until every node applied what the cluster had committed when that leader was
   * first seen (the highest commit index any node reported then).
   */
  readonly caughtUpMs: number;
  /** The commit index every node had to reach. */
  readonly target: number;
}

/** A node that did not catch up within the bound, and where the cluster stood. */
export interface Stuck {
  readonly stuck: string;
}

/**
 * Measures the recovery after a heal at `healedAt` (a `performance.now()` time): a leader, then
 * every node caught up to the commit index of that moment. Gives up after `boundMs` from the heal
 * and says which node is behind.
 */
export async function awaitRecovery(
  cluster: NemesisCluster,
  options: { healedAt: number; boundMs: number; signal?: AbortSignal },
): Promise<Recovery | Stuck> {
  const { healedAt, boundMs, signal } = options;
  const deadline = healedAt + boundMs;
  let leaderMs: number | undefined;
  let target = 0;
  let last = new Map<string, NemesisNodeStatus>();
  for (;;) {
    signal?.throwIfAborted();
    last = await cluster.statuses();
    const now = performance.now();
    if (leaderMs === undefined && agreedLeader(last, cluster.ids.length) !== undefined) {
      leaderMs = now - healedAt;
      target = Math.max(...[...last.values()].map((status) => status.commitIndex));
    }
    if (
      leaderMs !== undefined &&
      cluster.ids.every((id) => {
        const status = last.get(id);
        return status?.state === 'running' && status.appliedIndex >= target;
      })
    ) {
      return { leaderMs, caughtUpMs: now - healedAt, target };
    }
    if (now > deadline) {
      const behind = cluster.ids.map((id) => `${id}: ${describeStatus(last.get(id))}`).join('; ');
      return {
        stuck:
          leaderMs === undefined
            ? `no leader a majority follows ${boundMs} ms after healing (${behind})`
            : `not every node applied ${target} within ${boundMs} ms of healing (${behind})`,
      };
    }
    await sleep(POLL_MS);
  }
}

/**
 * Waits until the cluster is still: every node runs, follows one leader, and has applied all of
 * the leader's log, twice in a row. Resolves with that applied index, or a problem after
 * `timeoutMs`.
 */
export async function awaitQuiescence(
  cluster: NemesisCluster,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<{ readonly appliedIndex: number } | { readonly problem: string }> {
  const deadline = performance.now() + options.timeoutMs;
  let previous: number | undefined;
  let last = new Map<string, NemesisNodeStatus>();
  for (;;) {
    options.signal?.throwIfAborted();
    last = await cluster.statuses();
    const leader = agreedLeader(last, cluster.ids.length);
    const still =
      leader !== undefined &&
      leader.commitIndex === leader.lastIndex &&
      cluster.ids.every((id) => {
        const status = last.get(id);
        return (
          status?.state === 'running' &&
          status.leaderId === leader.id &&
          status.appliedIndex === leader.lastIndex
        );
      });
    if (still && previous === leader.lastIndex) return { appliedIndex: leader.lastIndex };
    previous = still ? leader.lastIndex : undefined;
    if (performance.now() > deadline) {
      const where = cluster.ids.map((id) => `${id}: ${describeStatus(last.get(id))}`).join('; ');
      return { problem: `the cluster did not settle within ${options.timeoutMs} ms (${where})` };
    }
    await sleep(POLL_MS * 2);
  }
}

/** One line about a node's status, for reports. */
function describeStatus(status: NemesisNodeStatus | undefined): string {
  if (status === undefined) return 'no answer';
  if (status.state !== 'running') return `${status.state} (${status.fatal ?? 'no error'})`;
  return `${status.role} term ${status.term} leader ${status.leaderId ?? '-'} commit ${status.commitIndex} applied ${status.appliedIndex} last ${status.lastIndex}`;
}
