import { setTimeout as sleep } from 'node:timers/promises';
import type { TRPCClient } from '@trpc/client';
import type { RaftNodeStatus } from '@tsraft/core';
import type { NemesisAppRouter } from '../node/nemesis-app.ts';
import type { FaultContext, Scenario } from '../scenario.ts';
import { pick, shuffle } from '../scenario.ts';

/** How long a membership call, and the restoration of the full membership, may take. */
const CHANGE_TIMEOUT_MS = 30_000;
/** Deadline of one admin call as the harness sees it (the node's own deadline is 10 s). */
const CALL_TIMEOUT_MS = 12_000;
/** Deadline of one leadership transfer (several election timeouts of the nodes). */
const TRANSFER_TIMEOUT_MS = 2_000;
/** A SIGSTOP that outlasts any election timeout of the nodes (10 to 20 ticks of 15 ms). */
const PAUSE_MS = 1_000;

type Admin = TRPCClient<NemesisAppRouter>;

/**
 * Runs `call` on the node a majority follows, again while it fails (a leader change, another
 * change under way, no answer), as an operator's script would; throws the last error after
 * `timeoutMs`.
 */
async function onLeader<T>(
  context: FaultContext,
  call: (admin: Admin, leader: string) => Promise<T>,
  timeoutMs = CHANGE_TIMEOUT_MS,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    context.signal.throwIfAborted();
    try {
      const leader = await context.leader();
      return await call(context.cluster.admin(leader), leader);
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await sleep(200, undefined, { signal: context.signal });
    }
  }
}

/** The leader's Raft status (its configuration is the one in effect). */
function leaderStatus(context: FaultContext): Promise<RaftNodeStatus> {
  return onLeader(context, (admin) =>
    admin.raftAdmin.status.query(undefined, { signal: AbortSignal.timeout(2_000) }),
  );
}

/** Whether `a` and `b` hold the same node ids. */
function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

/** Whether `config` has every node of the cluster as a voter, no learner, and is not joint. */
function isFull(status: RaftNodeStatus, ids: readonly string[]): boolean {
  return (
    !status.joint &&
    (status.config.learners ?? []).length === 0 &&
    sameMembers(status.config.voters, ids)
  );
}

function describeConfig(status: RaftNodeStatus): string {
  const { voters, outgoingVoters, learners } = status.config;
  return (
    `voters [${voters.join(', ')}]` +
    (outgoingVoters === undefined ? '' : ` (joint with [${outgoingVoters.join(', ')}])`) +
    ((learners ?? []).length === 0 ? '' : ` learners [${(learners ?? []).join(', ')}]`)
  );
}

/**
 * Brings every node back as a voter: a single missing voter as a learner the leader promotes
 * once it caught up (`addLearner(id, { promote: true })`), anything else with one
 * `changeMembership` to all of them (joint consensus when more than one voter changes). Waits
 * while a joint configuration finishes. Throws when the membership is not full after
 * {@link CHANGE_TIMEOUT_MS}.
 */
async function restoreMembership(context: FaultContext): Promise<void> {
  const { ids } = context.cluster;
  const deadline = performance.now() + CHANGE_TIMEOUT_MS;
  let last = 'no leader answered';
  while (performance.now() < deadline) {
    context.signal.throwIfAborted();
    try {
      const status = await leaderStatus(context);
      last = describeConfig(status);
      if (isFull(status, ids)) return;
      const missing = ids.filter((id) => !status.config.voters.includes(id));
      const learners = status.config.learners ?? [];
      if (status.joint || (missing.length === 1 && learners.includes(missing[0] as string))) {
        // The leader finishes a joint change, and promotes a learner once it caught up, by itself.
      } else if (missing.length === 1 && learners.length === 0) {
        await onLeader(context, (admin) =>
          admin.raftAdmin.addLearner.mutate(
            { id: missing[0] as string, promote: true, timeoutMs: 10_000 },
            { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) },
          ),
        );
      } else {
        await onLeader(context, (admin) =>
          admin.raftAdmin.changeMembership.mutate(
            { voters: [...ids], timeoutMs: 10_000 },
            { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) },
          ),
        );
      }
    } catch (error) {
      last = `${last}; ${(error as Error).message}`;
    }
    await sleep(200, undefined, { signal: context.signal });
  }
  throw new Error(`the membership was not full again within ${CHANGE_TIMEOUT_MS} ms: ${last}`);
}

/**
 * After the round: every node sees the full membership (a removed node that was added back
 * learned it too).
 */
async function verifyFull(context: FaultContext): Promise<string[]> {
  const problems: string[] = [];
  for (const id of context.cluster.ids) {
    try {
      const status = await context.cluster
        .admin(id)
        .raftAdmin.status.query(undefined, { signal: AbortSignal.timeout(2_000) });
      if (!isFull(status, context.cluster.ids)) {
        problems.push(`${id} ended with ${describeConfig(status)}, not every node a voter`);
      }
    } catch (error) {
      problems.push(`${id} did not report its configuration: ${(error as Error).message}`);
    }
  }
  return problems;
}

/**
 * Brings the leader's configuration to what `reached` accepts with `mutate`, on whichever node
 * leads, again after a leader change (the new leader may already have the change in its log:
 * then nothing is proposed again).
 */
function changeTo(
  context: FaultContext,
  reached: (status: RaftNodeStatus) => boolean,
  mutate: (admin: Admin, signal: AbortSignal) => Promise<unknown>,
): Promise<string> {
  return onLeader(context, async (admin) => {
    const signal = AbortSignal.timeout(CALL_TIMEOUT_MS);
    const status = await admin.raftAdmin.status.query(undefined, { signal });
    if (reached(status) && !status.joint) return `in effect (${describeConfig(status)})`;
    await mutate(admin, signal);
    return 'committed';
  });
}

/** What goes wrong beside a membership change. */
type SideFault = 'none' | 'kill-follower' | 'kill-leader' | 'pause-leader';

/**
 * Starts `change` and, per `side`, kills a follower first (one whose loss leaves a majority of
 * both the old and the new voters), or kills or freezes the leader a moment after the change was
 * proposed (it may be in the leader's log only: the next leader decides; a frozen leader is
 * resumed after an election timeout, stale). Resolves with what happened to the change, the
 * nodes hit, and a function that heals what is still down.
 */
async function changeDuring(
  context: FaultContext,
  side: SideFault,
  votersAfter: readonly string[],
  change: () => Promise<string>,
): Promise<{ outcome: string; heal: () => Promise<void>; hit: string[] }> {
  const { cluster } = context;
  const leader = await context.leader();
  const hit: string[] = [];
  if (side === 'kill-follower') {
    const keepsMajority = (voters: readonly string[], victim: string): boolean =>
      voters.filter((id) => id !== victim).length > voters.length / 2;
    const candidates = cluster.ids.filter(
      (id) => id !== leader && keepsMajority(cluster.ids, id) && keepsMajority(votersAfter, id),
    );
    if (candidates.length > 0) {
      const victim = pick(context.random, candidates);
      context.note(`SIGKILL follower ${victim}`);
      await cluster.process(victim).kill();
      hit.push(victim);
    }
  }
  const changing = change().catch((error: unknown) => `failed (${(error as Error).message})`);
  if (side === 'kill-leader' || side === 'pause-leader') {
    await sleep(Math.floor(context.random.next() * 30));
    hit.push(leader);
    if (side === 'kill-leader') {
      context.note(`SIGKILL leader ${leader}`);
      await cluster.process(leader).kill();
    } else {
      context.note(`SIGSTOP leader ${leader}`);
      cluster.process(leader).pause();
      await sleep(PAUSE_MS, undefined, { signal: context.signal });
      context.note(`SIGCONT ${leader}`);
      cluster.process(leader).resume();
    }
  }
  const outcome = await changing;
  return {
    outcome,
    hit,
    heal: async () => {
      for (const id of hit) {
        const process = cluster.process(id);
        if (!process.running) {
          context.note(`restart ${id}`);
          await process.start({ signal: context.signal });
        }
      }
    },
  };
}

const SIDE_FAULTS: readonly SideFault[] = ['none', 'kill-follower', 'kill-leader', 'pause-leader'];

export const membershipRemoveAdd: Scenario = {
  name: 'member-remove-add',
  summary:
    'remove a voter (the leader or a follower) while a follower or the leader is killed or frozen, then add it back as a learner that is promoted',
  appliesTo: () => true,
  run: async (context) => {
    const { cluster } = context;
    const leader = await context.leader();
    const target =
      context.random.next() < 0.5
        ? leader
        : pick(
            context.random,
            cluster.ids.filter((id) => id !== leader),
          );
    const side = pick(context.random, SIDE_FAULTS);
    context.note(`remove ${target === leader ? 'leader' : 'follower'} ${target} (${side})`);
    const during = await changeDuring(
      context,
      side,
      cluster.ids.filter((id) => id !== target),
      () =>
        changeTo(
          context,
          (status) => !status.config.voters.includes(target),
          (admin, signal) =>
            admin.raftAdmin.removeNode.mutate({ id: target, timeoutMs: 10_000 }, { signal }),
        ),
    );
    try {
      await context.hold();
    } finally {
      await during.heal();
      context.note(`add ${target} back`);
      await restoreMembership(context);
    }
    return {
      targets: [target, ...during.hit],
      detail: `remove ${target === leader ? 'leader' : 'follower'} ${target} (${side}${during.hit.length > 0 ? ` ${during.hit.join(', ')}` : ''}): ${during.outcome}; added back`,
      verify: () => verifyFull(context),
    };
  },
};

export const membershipJoint: Scenario = {
  name: 'member-joint',
  summary:
    'replace the voters by a bare majority of them through joint consensus (the leader kept or not) while a node is killed or the leader frozen, then back to all',
  appliesTo: () => true,
  run: async (context) => {
    const { ids } = context.cluster;
    const voters = shuffle(context.random, ids)
      .slice(0, Math.floor(ids.length / 2) + 1)
      .sort();
    const leader = await context.leader();
    const side = pick(context.random, SIDE_FAULTS);
    context.note(
      `joint change to [${voters.join(', ')}] (leader ${leader} ${voters.includes(leader) ? 'kept' : 'removed'}; ${side})`,
    );
    const during = await changeDuring(context, side, voters, () =>
      changeTo(
        context,
        (status) => sameMembers(status.config.voters, voters),
        (admin, signal) =>
          admin.raftAdmin.changeMembership.mutate(
            { voters, mode: 'joint', timeoutMs: 10_000 },
            { signal },
          ),
      ),
    );
    try {
      await context.hold();
    } finally {
      await during.heal();
      context.note('joint change back to every node');
      await restoreMembership(context);
    }
    return {
      targets: [...ids.filter((id) => !voters.includes(id)), ...during.hit],
      detail: `voters [${voters.join(', ')}] (leader ${leader} ${voters.includes(leader) ? 'kept' : 'removed'}; ${side}${during.hit.length > 0 ? ` ${during.hit.join(', ')}` : ''}): ${during.outcome}; back to all`,
      verify: () => verifyFull(context),
    };
  },
};

/** Where the target of a transfer stands. */
type TransferCase = 'plain' | 'follower-killed' | 'target-cut-off';

export const transferLeader: Scenario = {
  name: 'transfer-leader',
  summary:
    'transfer leadership to a follower: plainly, while another follower is killed, or to a follower cut off (which must fail, and the leader resume)',
  appliesTo: () => true,
  run: async (context) => {
    const { cluster } = context;
    const leader = await context.leader();
    const followers = cluster.ids.filter((id) => id !== leader);
    const target = pick(context.random, followers);
    const which = pick<TransferCase>(context.random, [
      'plain',
      'follower-killed',
      'target-cut-off',
    ]);
    const hit: string[] = [target];
    if (which === 'follower-killed') {
      const victim = pick(
        context.random,
        followers.filter((id) => id !== target),
      );
      context.note(`SIGKILL follower ${victim}`);
      await cluster.process(victim).kill();
      hit.push(victim);
    } else if (which === 'target-cut-off') {
      context.note(`isolate ${target}`);
      cluster.partition([[target], cluster.ids.filter((id) => id !== target)]);
    }
    context.note(`transfer leadership ${leader} -> ${target} (${which})`);
    let outcome: { leaderId: string } | Error;
    try {
      outcome = await cluster
        .admin(leader)
        .raftAdmin.transferLeadership.mutate(
          { to: target, timeoutMs: TRANSFER_TIMEOUT_MS },
          { signal: AbortSignal.timeout(TRANSFER_TIMEOUT_MS + 2_000) },
        );
    } catch (error) {
      outcome = error as Error;
    }
    const described =
      outcome instanceof Error ? `failed (${outcome.message})` : `now led by ${outcome.leaderId}`;
    context.note(`transfer: ${described}`);
    // After a failed transfer to a node cut off, the leader resumes (thesis 3.10): a majority
    // follows a leader again (under load, maybe after an election).
    const resumed =
      which === 'target-cut-off' && outcome instanceof Error
        ? await context.leader().then(
            (id) => id,
            (error: unknown) => `none (${(error as Error).message})`,
          )
        : undefined;
    await context.hold();
    if (which === 'follower-killed') {
      context.note(`restart ${hit[1]}`);
      await cluster.process(hit[1] as string).start({ signal: context.signal });
    } else if (which === 'target-cut-off') {
      cluster.healLinks();
      context.note('healed every link');
    }
    return {
      targets: hit,
      detail: `transfer ${leader} -> ${target} (${which}${which === 'follower-killed' ? ` ${hit[1]}` : ''}): ${described}${resumed === undefined ? '' : `, then led by ${resumed}`}`,
      verify: async () => {
        if (which !== 'target-cut-off') return [];
        if (!(outcome instanceof Error)) {
          return [`the transfer to ${target}, cut off from every node, succeeded: ${described}`];
        }
        return cluster.ids.includes(resumed as string)
          ? []
          : [`after the failed transfer to ${target}, no node led a majority: ${resumed}`];
      },
    };
  },
};
