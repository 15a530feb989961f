/**
 * The core bench's rows for issue 11, on in-process clusters (RaftNode, in-memory log store, KV
 * state machine, in-process transport):
 *
 * - lease reads/s beside ReadIndex reads/s on the leader, 64 in flight, alternating rounds of each
 *   on one cluster whose nodes run with `leaseReads`;
 * - the duration (p50, p99) of membership changes and leadership transfers made while 64 writes
 *   are in flight, and the writes/s completed while they run beside the writes/s completed
 *   between them (the baseline, measured in the same run).
 */
import type { MembershipChange } from '../src/engine/membership-change.ts';
import { RaftError } from '../src/errors.ts';
import type { NodeId } from '../src/log-entry.ts';
import { RaftNode } from '../src/runtime/raft-node.ts';
import { InProcessNetwork } from '../src/testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../src/testing/kv-state-machine.ts';
import { MemoryLogStore } from '../src/testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../src/testing/memory-snapshot-store.ts';
import { percentile } from './closed-loop.ts';

type KvNode = RaftNode<KvCommand, KvResult>;

async function startNodes(
  ids: readonly NodeId[],
  voters: readonly NodeId[],
  leaseReads: boolean,
): Promise<{ nodes: KvNode[]; machines: KvStateMachine[] }> {
  const network = new InProcessNetwork({ copy: false });
  const machines = ids.map(() => new KvStateMachine());
  const nodes = await Promise.all(
    ids.map((id, i) =>
      RaftNode.start<KvCommand, KvResult>({
        id,
        config: { voters },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: machines[i]!,
        transport: network.transport(id),
        tuning: { leaseReads },
      }),
    ),
  );
  return { nodes, machines };
}

/** The leader of the highest term, waiting for one. */
async function leaderOf(nodes: readonly KvNode[]): Promise<KvNode> {
  for (let i = 0; i < 1000; i++) {
    let best: KvNode | undefined;
    for (const node of nodes) {
      const s = node.status();
      if (s.role === 'leader' && (best === undefined || s.term > best.status().term)) best = node;
    }
    if (best !== undefined) return best;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('no leader within 5 s');
}

function table(header: string[], lines: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [format(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(format)].join(
    '\n',
  );
}

const per = (n: number) => Math.round(n).toLocaleString('en-US');

/**
 * Lease reads/s and ReadIndex reads/s on the leader, in alternating rounds of `seconds`. A read
 * that fails with a retryable error (`ReadUnavailableError`: a loaded machine stalled the process
 * long enough for the followers to elect a new leader, or for a read to pass its deadline) is
 * counted as unavailable, and the loop goes on with whichever node leads then; any other error
 * ends the bench.
 */
export async function leaseReadRows(seconds: number, rounds = 3): Promise<string> {
  const { nodes, machines } = await startNodes(['n1', 'n2', 'n3'], ['n1', 'n2', 'n3'], true);
  try {
    let leader = await leaderOf(nodes);
    await leader.propose({ op: 'put', key: 'k', value: 'v' });
    const kinds = ['linearizable', 'lease'] as const;
    const totals = {
      linearizable: { ops: 0, unavailable: 0, ms: 0, lat: [] as number[] },
      lease: { ops: 0, unavailable: 0, ms: 0, lat: [] as number[] },
    };
    for (let round = 0; round < rounds; round++) {
      for (const consistency of kinds) {
        console.error(`[bench] ${consistency} reads on the leader, round ${round + 1}`);
        const start = performance.now();
        const end = start + seconds * 1000;
        await Promise.all(
          Array.from({ length: 64 }, async () => {
            while (performance.now() < end) {
              const t = performance.now();
              const machine = machines[nodes.indexOf(leader)]!;
              try {
                await leader.read(() => machine.get('k'), { consistency });
              } catch (error) {
                if (!isRetryable(error)) throw error;
                totals[consistency].unavailable++;
                leader = await leaderOf(nodes);
                continue;
              }
              totals[consistency].lat.push(performance.now() - t);
              totals[consistency].ops++;
            }
          }),
        );
        totals[consistency].ms += performance.now() - start;
      }
    }
    const lines = kinds.map((consistency) => {
      const t = totals[consistency];
      const sorted = t.lat.sort((a, b) => a - b);
      return [
        consistency === 'lease' ? 'KV read (leader), lease' : 'KV read (leader), ReadIndex',
        '64',
        String(t.ops),
        per(t.ops / (t.ms / 1000)),
        percentile(sorted, 50).toFixed(3),
        percentile(sorted, 99).toFixed(3),
        String(t.unavailable),
      ];
    });
    return table(['reads', 'in flight', 'ops', 'ops/s', 'p50 ms', 'p99 ms', 'unavailable'], lines);
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
}

/** Whether `error` is one of tsraft's API errors that say to retry. */
function isRetryable(error: unknown): boolean {
  return error instanceof RaftError && error.retryable;
}

interface Interval {
  readonly kind: string;
  readonly start: number;
  readonly end: number;
}

/**
 * Membership changes and leadership transfers under 64 writes in flight, `rounds` of each: add
 * and remove a voter (one step), 3 -> 5 and 5 -> 3 voters (joint consensus), hand leadership over.
 */
export async function membershipRows(rounds: number): Promise<string> {
  const ids = ['n1', 'n2', 'n3', 'n4', 'n5'];
  const three = ['n1', 'n2', 'n3'];
  const { nodes } = await startNodes(ids, three, false);
  const completions: number[] = [];
  let stop = false;
  try {
    await leaderOf(nodes);
    const value = 'v'.repeat(256);
    let counter = 0;
    const writers = Array.from({ length: 64 }, async () => {
      while (!stop) {
        const leader = await leaderOf(nodes);
        try {
          await leader.propose({ op: 'put', key: `k${counter++ % 1024}`, value });
          completions.push(performance.now());
        } catch {
          await new Promise((r) => setTimeout(r, 1));
        }
      }
    });
    await new Promise((r) => setTimeout(r, 500));

    const intervals: Interval[] = [];
    const timed = async (kind: string, op: (leader: KvNode) => Promise<unknown>) => {
      for (;;) {
        const leader = await leaderOf(nodes);
        const start = performance.now();
        try {
          await op(leader);
          intervals.push({ kind, start, end: performance.now() });
          return;
        } catch (error) {
          if (!isRetryable(error)) throw error;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    };
    const change = (voters: NodeId[]) => (leader: KvNode) =>
      leader.changeMembership({ voters } satisfies MembershipChange);
    const pause = () => new Promise((r) => setTimeout(r, 100));
    for (let round = 0; round < rounds; round++) {
      console.error(`[bench] membership changes and a transfer under load, round ${round + 1}`);
      await timed('add a voter (one step)', change([...three, 'n4']));
      await pause();
      await timed('remove a voter (one step)', change(three));
      await pause();
      await timed('3 -> 5 voters (joint)', change(ids));
      await pause();
      await timed('5 -> 3 voters (joint)', change(three));
      await pause();
      await timed('leadership transfer', (leader) => leader.transferLeadership());
      await pause();
    }
    stop = true;
    await Promise.all(writers);

    const first = intervals[0]!.start;
    const last = intervals.at(-1)!.end;
    const inside = (t: number, list: readonly Interval[]) =>
      list.some((i) => t >= i.start && t <= i.end);
    const span = (list: readonly Interval[]) => list.reduce((ms, i) => ms + (i.end - i.start), 0);
    const window = completions.filter((t) => t >= first && t <= last);
    const outside = window.filter((t) => !inside(t, intervals));
    const baseline = outside.length / ((last - first - span(intervals)) / 1000);
    const kinds = [...new Set(intervals.map((i) => i.kind))];
    const lines = kinds.map((kind) => {
      const mine = intervals.filter((i) => i.kind === kind);
      const durations = mine.map((i) => i.end - i.start).sort((a, b) => a - b);
      const during = window.filter((t) => inside(t, mine)).length / (span(mine) / 1000);
      return [
        kind,
        String(mine.length),
        percentile(durations, 50).toFixed(1),
        percentile(durations, 99).toFixed(1),
        per(during),
        per(baseline),
        `${Math.round((1 - during / baseline) * 100)}%`,
      ];
    });
    return table(
      [
        'under 64 writes in flight',
        'samples',
        'p50 ms',
        'p99 ms',
        'writes/s during',
        'writes/s between',
        'dip',
      ],
      lines,
    );
  } finally {
    stop = true;
    await Promise.all(nodes.map((n) => n.close()));
  }
}
