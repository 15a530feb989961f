import { setTimeout as sleep } from 'node:timers/promises';
import type { NemesisNodeStatus } from '../node/nemesis-app.ts';
import type { Scenario } from '../scenario.ts';
import { pick } from '../scenario.ts';

/** How long the cut-off follower may wait for the others to commit past its log. */
const PROGRESS_TIMEOUT_MS = 20_000;

/**
 * A follower is cut off (partitioned, or killed), the others commit past its log and take
 * snapshots, which compacts their logs past it; once healed, it can only catch up through a
 * snapshot (Raft paper 7). Checked after the recovery: it installed one, at or past the index the
 * leader compacted to while it was away.
 */
export const snapshotCatchUp: Scenario = {
  name: 'snapshot-catch-up',
  summary:
    'cut a follower off (partition or kill), snapshot the others past its log, heal: it catches up through the snapshot',
  appliesTo: () => true,
  run: async (context) => {
    const { cluster } = context;
    const leader = await context.leader();
    const others = cluster.ids.filter((id) => id !== leader);
    const follower = pick(context.random, others);
    const kill = context.random.next() < 0.5;
    const before = await cluster.status(follower);
    if (kill) {
      context.note(`SIGKILL follower ${follower}`);
      await cluster.process(follower).kill();
    } else {
      context.note(`isolate follower ${follower}`);
      cluster.partition([[follower], cluster.ids.filter((id) => id !== follower)]);
    }
    // Its log can only have grown a little since `before`: its last index then, plus what was
    // in flight. Wait for the others to commit well past it.
    const floor = (before?.lastIndex ?? 0) + 10;
    const rest = cluster.ids.filter((id) => id !== follower);
    const deadline = performance.now() + PROGRESS_TIMEOUT_MS;
    let progressed = false;
    while (performance.now() < deadline && !context.signal.aborted) {
      const statuses = await Promise.all(rest.map((id) => cluster.status(id)));
      if (statuses.every((status) => (status?.appliedIndex ?? 0) > floor)) {
        progressed = true;
        break;
      }
      await sleep(100);
    }
    const snapshots: string[] = [];
    let compactedTo = Infinity;
    for (const id of rest) {
      try {
        const taken = await cluster
          .admin(id)
          .admin.snapshot.mutate(undefined, { signal: AbortSignal.timeout(15_000) });
        snapshots.push(`${id}@${taken?.index ?? 'none'}`);
        compactedTo = Math.min(compactedTo, taken?.index ?? 0);
      } catch (error) {
        snapshots.push(`${id} failed (${(error as Error).message})`);
        compactedTo = 0;
      }
    }
    context.note(`snapshots while ${follower} is away: ${snapshots.join(', ')}`);
    await context.hold();
    if (kill) {
      context.note(`restart ${follower}`);
      await cluster.process(follower).start({ signal: context.signal });
    } else {
      cluster.healLinks();
      context.note('healed every link');
    }
    return {
      targets: [follower],
      detail: `${kill ? 'kill' : 'isolate'} follower ${follower} (last index ${before?.lastIndex ?? '?'}), snapshots ${snapshots.join(', ')}`,
      verify: async () => {
        if (!progressed) {
          return [
            `the others did not apply past index ${floor} within ${PROGRESS_TIMEOUT_MS} ms while ${follower} was away`,
          ];
        }
        if (compactedTo <= floor) {
          return [
            `a snapshot while ${follower} was away failed or did not pass index ${floor}: ${snapshots.join(', ')}`,
          ];
        }
        const installed = context
          .nodeLines()
          .filter((line) => line.node === follower && line.msg === 'installed a snapshot')
          .map((line) => Number(line.index));
        if (!installed.some((index) => index >= compactedTo)) {
          const status: NemesisNodeStatus | undefined = await cluster.status(follower);
          // Behind the snapshot still (a recovery past its bound, reported as such), or past it
          // through the log: only the second says the snapshot was not needed.
          if (status === undefined || status.appliedIndex < compactedTo) {
            return [
              `${follower} has not caught up past the snapshots (applied ${status?.appliedIndex ?? 'unknown'}, snapshots from ${compactedTo}; installed: ${installed.join(', ') || 'none'})`,
            ];
          }
          return [
            `${follower} caught up without installing a snapshot at or past ${compactedTo} (installed: ${installed.join(', ') || 'none'}; first index now ${status.firstIndex})`,
          ];
        }
        return [];
      },
    };
  },
};
