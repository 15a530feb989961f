/**
 * The tsraft demo (`./dev demo`): a guided tour of a real 3-node Raft cluster. Each node is an OS
 * process (`node.ts`) with its own embedded Postgres (PGlite) in `.data/demo/<id>`, and the nodes
 * talk tRPC over loopback. From a tRPC client in this process, the tour makes typed replicated
 * writes (a small bank: `open`, `transfer`) on the leader and on a follower, a linearizable read,
 * kills the leader's process (SIGKILL) while writes continue exactly-once on a new leader,
 * restarts the killed node from its database and shows it catching up, then stops every process
 * it started (also on Ctrl-C or an error).
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeId } from '@tsraft/core';
import { raftErrorOf } from '@tsraft/trpc-transport';
import { DemoCluster, type ReadyReport } from './cluster.ts';
import { copyFreshDatabase } from './pglite-template.ts';

const repo = fileURLToPath(new URL('../../..', import.meta.url));
const dataRoot = join(repo, '.data', 'demo');
const dataDir = (id: NodeId): string => join(dataRoot, id);
const cacheDir = join(repo, '.data', 'cache');
const shown = (path: string): string => relative(process.cwd(), path) || '.';
const ids: NodeId[] = ['n1', 'n2', 'n3'];
const started = performance.now();
let cluster: DemoCluster | undefined;

function say(text: string): void {
  const ms = Math.round(performance.now() - started);
  console.log(`[${String(ms).padStart(5)} ms] ${text}`);
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * A linearizable read, repeated while the cluster says it may be repeated (a node that lost track
 * of the leader for a moment answers `ReadUnavailableError`, retryable), for up to 10 s.
 */
async function readBalances(demo: DemoCluster, id: NodeId): Promise<Record<string, number>> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    try {
      return await demo.client(id).balances.query();
    } catch (error) {
      if (raftErrorOf(error)?.retryable !== true || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Gives each node a fresh database: a copy of one PGlite folder initialized once (initdb in
 * WebAssembly takes seconds per database) and kept in `.data/cache` for the next runs.
 */
async function prepareDatabases(): Promise<void> {
  for (const id of ids) {
    const fresh = await copyFreshDatabase(cacheDir, dataDir(id));
    if (fresh.initializedMs !== undefined) {
      say(
        `  initialized a PGlite database once (initdb, ${seconds(fresh.initializedMs)}); kept in ${shown(cacheDir)} and copied for every node from now on`,
      );
    }
  }
  say(
    `  copied a freshly initialized database to ${ids.map((id) => shown(dataDir(id))).join(', ')}`,
  );
}

/** Starts node processes, printing a line per second while their databases open. */
async function startNodes(demo: DemoCluster, which: readonly NodeId[]): Promise<ReadyReport[]> {
  const waiting = new Set(which);
  const since = performance.now();
  const ticker = setInterval(() => {
    say(
      `  ... ${[...waiting].join(', ')} still opening PGlite (${seconds(performance.now() - since)})`,
    );
  }, 2000);
  try {
    return await Promise.all(
      which.map(async (id) => {
        const ready = await demo.start(id);
        waiting.delete(id);
        say(
          `  ${id} is up: process ${ready.pid}, database open in ${seconds(ready.openMs)}, serving ${demo.urls[id]}`,
        );
        return ready;
      }),
    );
  } finally {
    clearInterval(ticker);
  }
}

async function main(): Promise<void> {
  say('Starting a 3-node Raft cluster (n1, n2, n3) as three OS processes on this machine.');
  say(
    `Each node keeps its Raft log and the bank's tables in its own PGlite database (Postgres compiled to WebAssembly, in the node's process) under ${shown(dataRoot)}/<node>, wiped first.`,
  );
  say(
    'The nodes talk tRPC over loopback; every request is signed with a secret generated for this run.',
  );
  await rm(dataRoot, { recursive: true, force: true });
  await prepareDatabases();
  const demo = await DemoCluster.create({
    ids,
    secret: randomBytes(32).toString('base64url'),
    dataDir,
  });
  cluster = demo;
  const leaderEvents: { id: NodeId; term: number; at: number }[] = [];
  demo.onReport = (id, event) => {
    if (event.event !== 'leader') return;
    leaderEvents.push({ id, term: Number(event.term), at: performance.now() });
    say(`  ${id}: "I am the leader of term ${event.term}"`);
  };
  say('Opening the three databases in parallel (copies: no initdb, seconds on a busy machine).');
  await startNodes(demo, ids);
  say(
    'Every node starts as a follower; one that hears no leader for 1-2 s asks the others for votes.',
  );
  const elected = await demo.leader();
  const leader = elected.id;
  say(`${leader} won the election (term ${elected.term}). The others follow it.`);
  const [follower, other] = ids.filter((id) => id !== leader) as [NodeId, NodeId];

  say(
    `The app's tRPC client (raftSessionLink + raftFailoverLink) sends typed mutations to ${leader}:`,
  );
  const { client: bank, trace } = demo.sessionClient(leader);
  const alice = await bank.open.mutate({ id: 'alice', balance: 100 });
  const bob = await bank.open.mutate({ id: 'bob', balance: 50 });
  say(
    `  open alice and bob: committed on a majority, applied by every node to its own Postgres; results ${JSON.stringify(alice)}, ${JSON.stringify(bob)}`,
  );

  say(
    `Now a transfer sent to follower ${follower}: a follower does not write, it forwards the command to the leader ${leader}.`,
  );
  const { client: viaFollower } = demo.sessionClient(follower);
  const paid = await viaFollower.transfer.mutate({ from: 'alice', to: 'bob', amount: 30 });
  say(`  transfer 30 alice -> bob (forwarded by ${follower}): result ${JSON.stringify(paid)}`);

  const read = await readBalances(demo, other);
  say(
    `A linearizable read on follower ${other} (ReadIndex: the leader confirms it still leads, ${other} waits to apply that far): ${JSON.stringify(read)}`,
  );

  try {
    await bank.transfer.mutate({ from: 'bob', to: 'alice', amount: 500 });
    throw new Error('the overdraft was accepted');
  } catch (error) {
    const raft = raftErrorOf(error);
    if (raft?.commandCode !== 'insufficient_funds') throw error;
    say(
      `A transfer of 500 from bob is refused by the command's handler (${raft.commandCode}), the same way on every node: nothing changed.`,
    );
  }

  say(
    `Killing the leader ${leader} (SIGKILL, process ${demo.pid(leader)}: no goodbye) between transfers of 1 from alice to bob.`,
  );
  const transfers = 6;
  const forwarded = (id: NodeId | undefined): string => {
    const current = leaderEvents.at(-1)?.id;
    return current === undefined || current === id
      ? ''
      : `, which forwarded it to the new leader ${current}`;
  };
  let killedAt = 0;
  for (let i = 1; i <= transfers; i++) {
    if (i === 4) {
      await demo.kill(leader);
      killedAt = performance.now();
      say(`  ${leader} killed.`);
    }
    trace.attempts = 0;
    trace.noAnswer = [];
    const sentAt = performance.now();
    const result = await bank.transfer.mutate({ from: 'alice', to: 'bob', amount: 1 });
    const retried =
      trace.attempts > 1
        ? `, after ${trace.attempts} attempts with the same stamp (${trace.noAnswer.length} got no answer from ${[...new Set(trace.noAnswer)].join(', ')}, the client moved on to ${trace.answeredBy}${forwarded(trace.answeredBy)})`
        : '';
    say(
      `  transfer ${i}: acknowledged by ${trace.answeredBy} in ${Math.round(performance.now() - sentAt)} ms${retried}: ${JSON.stringify(result)}`,
    );
  }
  const taken = leaderEvents.find((event) => event.at > killedAt);
  const now = await demo.leader();
  say(
    `${now.id} took over as leader of term ${now.term}, ${Math.round((taken?.at ?? performance.now()) - killedAt)} ms after ${leader} was killed; two of three nodes are a majority.`,
  );
  const after = await readBalances(demo, now.id);
  say(
    `Exactly-once: ${transfers} transfers acknowledged, and bob went from ${paid.to} to ${after.bob} (alice ${after.alice}, 150 in total): no retry applied twice.`,
  );

  say(
    `Restarting ${leader} as a new process on ${shown(dataDir(leader))}: its log, its vote and its tables survived the kill.`,
  );
  const before = await startNodes(demo, [leader]);
  const target = (await demo.leader()).commitIndex;
  say(
    `  ${leader} finds its log up to index ${before[0]?.lastIndex}; the cluster has committed up to ${target} meanwhile, so the leader sends it what it missed.`,
  );
  const deadline = performance.now() + 10_000;
  for (;;) {
    const status = await demo.client(leader).raftAdmin.status.query();
    if (status.appliedIndex >= target) break;
    if (performance.now() > deadline) throw new Error(`${leader} did not catch up`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const caughtUp = await demo.client(leader).localBalances.query();
  const rejoined = await demo.client(leader).raftAdmin.status.query();
  say(
    `${leader} rejoined as a follower and caught up to index ${target}: its own tables now read ${JSON.stringify(caughtUp)}.`,
  );
  say(
    rejoined.snapshotIndex > (before[0]?.lastIndex ?? 0)
      ? `  The entries it missed had been compacted away (every node takes a snapshot every 5 entries): the leader sent it its snapshot of index ${rejoined.snapshotIndex} in pieces, then the entries after it.`
      : `  The leader sent it the entries it missed (its log since the latest snapshot, index ${rejoined.snapshotIndex}).`,
  );

  say('Every node now holds the same state (local reads of each node):');
  for (const id of ids) {
    const client = demo.client(id);
    const [status, state] = await Promise.all([
      client.raftAdmin.status.query(),
      client.localBalances.query(),
    ]);
    say(`  ${id} (${status.role}): ${JSON.stringify(state)} applied=${status.appliedIndex}`);
  }
}

/** Ctrl-C (or a SIGTERM) ends the tour early; the `finally` below still stops the nodes. */
const interrupted = new Promise<never>((_, reject) => {
  const stop = (signal: string) => () => reject(new Error(`interrupted (${signal})`));
  process.once('SIGINT', stop('SIGINT'));
  process.once('SIGTERM', stop('SIGTERM'));
});

try {
  await Promise.race([main(), interrupted]);
  say('Tour complete.');
} catch (error) {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  const count = (await cluster?.stopAll()) ?? 0;
  say(`Stopped every node this demo started (${count} running processes).`);
}
process.exit();
