import { checkOperations, kvModel } from '@tsraft/core/testing';
import { type RecordedOperation, toCheckerOperations } from './history.ts';
import type { NemesisAudit } from './node/nemesis-app.ts';

/** The verdict of the linearizability checker on a history. */
export interface LinearizabilityVerdict {
  /** `unknown`: the checker ran out of time (not a pass). */
  readonly verdict: 'ok' | 'illegal' | 'unknown';
  /** Operations checked (failed reads are left out). */
  readonly operations: number;
  /** Why not `ok`. */
  readonly message?: string;
}

/**
 * Checks `history` with the core's linearizability checker and `kvModel`, key by key: every read
 * must see a state some order of the writes explains, consistent with real time; a write whose
 * outcome is unknown may have been applied at any time after its call, or never.
 *
 * Unknown writes make the search exponential (each may be placed anywhere after its call), and a
 * round with a long outage has dozens. So the history is first checked without the unknown writes
 * no operation observed (see {@link withoutUnobservedUnknownWrites}): taking them as never
 * applied is one of the orders allowed, so `ok` there is `ok` for the whole history. Otherwise
 * (a failed compare-and-set that only such a write explains, or a real violation) that
 * key's operations are checked whole, and that verdict is the answer. Keys are independent (each
 * round has keys of its own), so each is checked on its own; `timeoutMs` bounds the whole check.
 */
export function checkLinearizable(
  history: readonly RecordedOperation[],
  options: { timeoutMs?: number } = {},
): LinearizabilityVerdict {
  const operations = toCheckerOperations(history).length;
  const deadline = performance.now() + (options.timeoutMs ?? Infinity);
  const byKey = new Map<string, RecordedOperation[]>();
  for (const op of history) {
    const ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, [op]);
    else ops.push(op);
  }
  for (const [key, ops] of byKey) {
    const reduced = withoutUnobservedUnknownWrites(ops);
    let result = reduced.length < ops.length ? check(reduced, deadline) : undefined;
    if (result?.verdict !== 'ok') result = check(ops, deadline);
    if (result.verdict !== 'ok') {
      return { verdict: result.verdict, operations, message: `key ${key}: ${result.message}` };
    }
  }
  return { verdict: 'ok', operations };
}

/** One key's operations through the core's checker, with what is left of the time. */
function check(
  ops: readonly RecordedOperation[],
  deadline: number,
): ReturnType<typeof checkOperations> {
  const timeoutMs = Math.max(1, deadline - performance.now());
  return checkOperations(
    kvModel,
    toCheckerOperations(ops),
    Number.isFinite(timeoutMs) ? { timeoutMs } : {},
  );
}

/**
 * `history` without the writes whose outcome is unknown and whose value no operation observed:
 * no read returned a value containing it, and no compare-and-set expected one (whatever its
 * outcome). Values are unique per write, so an unobserved one either never applied or was
 * overwritten unseen. A value that is a substring of another value counts as observed (kept):
 * the reduction only ever keeps too much.
 */
function withoutUnobservedUnknownWrites(
  history: readonly RecordedOperation[],
): RecordedOperation[] {
  const seen: string[] = [];
  for (const op of history) {
    if (op.outcome === 'failed') continue;
    if (typeof op.output === 'string' && op.output !== '') seen.push(op.output);
    if (op.expected !== undefined && op.expected !== '') seen.push(op.expected);
  }
  return history.filter(
    (op) =>
      op.outcome !== 'unknown' ||
      op.value === undefined ||
      seen.some((value) => value.includes(op.value as string)),
  );
}

/** How many times each write id was applied on one node (ids absent: never). */
export type AppliedWrites = ReadonlyMap<string, number>;

/** At most this many problems are listed; the rest are counted. */
const PROBLEMS_LISTED = 10;

/**
 * Exactly-once, on every node: each acknowledged write applied exactly once; each write whose
 * outcome is unknown at most once, and on all nodes alike; no write applied that no client
 * issued. `writes` are the recorded writes of the rounds `applied` covers. Returns the problems
 * (empty: none).
 */
export function checkAppliedWrites(
  writes: readonly RecordedOperation[],
  applied: ReadonlyMap<string, AppliedWrites>,
): string[] {
  const problems: string[] = [];
  const issued = new Set<string>();
  for (const write of writes) {
    const id = write.writeId;
    if (id === undefined) continue;
    issued.add(id);
    const counts = [...applied].map(
      ([node, writesOfNode]) => [node, writesOfNode.get(id) ?? 0] as const,
    );
    for (const [node, count] of counts) {
      if (write.outcome === 'ok' && count === 0) {
        problems.push(`acknowledged write ${id} (${describe(write)}) is missing on ${node}`);
      } else if (count > 1) {
        problems.push(`write ${id} (${describe(write)}) was applied ${count} times on ${node}`);
      }
    }
    const distinct = new Set(counts.map(([, count]) => Math.min(count, 1)));
    if (distinct.size > 1) {
      const on = counts.filter(([, count]) => count > 0).map(([node]) => node);
      problems.push(`write ${id} (${describe(write)}) is applied on ${on.join(', ')} only`);
    }
  }
  for (const [node, writesOfNode] of applied) {
    for (const id of writesOfNode.keys()) {
      if (!issued.has(id)) problems.push(`${node} applied write ${id}, which no client issued`);
    }
  }
  return summarize(problems);
}

/**
 * The replicas agree: every node audited at the same applied index (and nothing was applied
 * during its audit), with the same checksums of the replicated tables, and no write applied
 * twice. Returns the problems (empty: none).
 */
export function checkReplicas(audits: ReadonlyMap<string, NemesisAudit>): string[] {
  const problems: string[] = [];
  const entries = [...audits];
  const [first] = entries;
  if (first === undefined) return ['no node could be audited'];
  for (const [node, audit] of entries) {
    if (audit.appliedIndex !== audit.appliedIndexAfter) {
      problems.push(
        `${node} applied entries during its audit (${audit.appliedIndex} -> ${audit.appliedIndexAfter})`,
      );
    }
    for (const duplicate of audit.duplicates) {
      problems.push(`${node} applied write ${duplicate.writeId} ${duplicate.count} times`);
    }
  }
  const [reference, expected] = first;
  for (const [node, audit] of entries.slice(1)) {
    if (audit.appliedIndex !== expected.appliedIndex) {
      problems.push(
        `${node} is at applied index ${audit.appliedIndex}, ${reference} at ${expected.appliedIndex}`,
      );
      continue;
    }
    if (audit.kvChecksum !== expected.kvChecksum || audit.kvRows !== expected.kvRows) {
      problems.push(
        `kv differs at applied index ${audit.appliedIndex}: ${reference} has ${expected.kvRows} rows (md5 ${expected.kvChecksum}), ${node} ${audit.kvRows} (md5 ${audit.kvChecksum})`,
      );
    }
    if (audit.writeChecksum !== expected.writeChecksum || audit.writeRows !== expected.writeRows) {
      problems.push(
        `applied_write differs at applied index ${audit.appliedIndex}: ${reference} has ${expected.writeRows} rows (md5 ${expected.writeChecksum}), ${node} ${audit.writeRows} (md5 ${audit.writeChecksum})`,
      );
    }
  }
  return summarize(problems);
}

function describe(write: RecordedOperation): string {
  return `${write.kind} ${write.key}, ${write.outcome}`;
}

function summarize(problems: string[]): string[] {
  if (problems.length <= PROBLEMS_LISTED) return problems;
  return [
    ...problems.slice(0, PROBLEMS_LISTED),
    `... and ${problems.length - PROBLEMS_LISTED} more`,
  ];
}
