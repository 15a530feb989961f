import { Bitset } from './bitset.ts';
import type { Model } from './model.ts';
import { isUnknownOutcome, type Operation } from './operation.ts';

/** Options of {@link checkOperations}. */
export interface CheckOptions {
  /**
   * Give up after this many milliseconds of search and answer `'unknown'`. Must be positive.
   * Default: no limit (deciding linearizability is NP-complete, so a pathological history may run
   * for a very long time).
   */
  readonly timeoutMs?: number;
}

/**
 * Why one partition of a history is not linearizable, as far as the search got: the longest order
 * of operations it could justify, and the operation that order could not get past.
 */
export interface LinearizabilityFailure<State, Input, Output> {
  /** Index of the failing partition among those `Model.partition` returned (0 without one). */
  readonly partitionIndex: number;
  /** The operations of the failing partition, as `Model.partition` returned them. */
  readonly partition: readonly Operation<Input, Output>[];
  /**
   * The longest sequence of operations the search linearized before it got stuck, in
   * linearization order. Every extension of it fails; it is one witness, not the only one.
   */
  readonly longestPrefix: readonly Operation<Input, Output>[];
  /** The model state after `longestPrefix`. */
  readonly stateAfterPrefix: State;
  /**
   * An operation that returned before any remaining operation could be linearized after
   * `longestPrefix`: it must be ordered next or earlier, and the model accepted no way to do so.
   */
  readonly blockedAt: Operation<Input, Output>;
  /**
   * The other operations that could have come right after `longestPrefix` in real-time order
   * (called before `blockedAt` returned, not in the prefix); each was rejected by the model there
   * or led to a dead end later.
   */
  readonly candidates: readonly Operation<Input, Output>[];
}

/**
 * The verdict of {@link checkOperations}:
 * - `'ok'`: the history is linearizable with respect to the model.
 * - `'illegal'`: it is not; `failure` describes the first failing partition found, and `message`
 *   renders it for a test failure.
 * - `'unknown'`: the time limit ran out before a verdict (no partition checked so far was illegal).
 */
export type CheckResult<State, Input, Output> =
  | { readonly verdict: 'ok'; readonly partitions: number }
  | {
      readonly verdict: 'illegal';
      readonly partitions: number;
      readonly failure: LinearizabilityFailure<State, Input, Output>;
      readonly message: string;
    }
  | { readonly verdict: 'unknown'; readonly partitions: number; readonly message: string };

/** How many operations of the longest prefix a failure message lists (the last ones). */
const MESSAGE_PREFIX_LIMIT = 20;
/** How many candidate operations a failure message lists (the first ones). */
const MESSAGE_CANDIDATE_LIMIT = 20;
/** How many search steps pass between two looks at the clock. */
const CLOCK_CHECK_INTERVAL = 0x400;

/**
 * Decides whether `history` is linearizable with respect to `model` (Herlihy & Wing 1990): whether
 * each operation can be given an instant between its call and its return such that applying the
 * operations in that order, from `model.init()`, is accepted by `model.step`.
 *
 * The search is Wing & Gong's backtracking algorithm ("Testing and verifying concurrent objects",
 * 1993) with Lowe's improvements ("Testing for linearizability", 2017): the history is split with
 * `model.partition` and each part checked on its own; call and return events form a doubly linked
 * list that linearized operations are lifted out of and put back into on backtracking; and each
 * (set of linearized operations, state) configuration is explored at most once.
 *
 * Synchronous and CPU-bound; it does not mutate `history`. Throws a `RangeError` if an operation
 * has a `NaN` time or returns before it is called, or if `timeoutMs` is not positive.
 */
export function checkOperations<State, Input, Output>(
  model: Model<State, Input, Output>,
  history: readonly Operation<Input, Output>[],
  options: CheckOptions = {},
): CheckResult<State, Input, Output> {
  const { timeoutMs } = options;
  if (timeoutMs !== undefined && !(timeoutMs > 0)) {
    throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
  }
  history.forEach(validateOperation);
  const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
  const partitions = model.partition ? model.partition(history) : [history];
  for (const [partitionIndex, partition] of partitions.entries()) {
    const outcome = searchPartition(model, partition, deadline);
    switch (outcome.kind) {
      case 'linearizable':
        break;
      case 'timed-out':
        return {
          verdict: 'unknown',
          partitions: partitions.length,
          message:
            `linearizability check timed out after ${timeoutMs} ms on partition ` +
            `${partitionIndex + 1} of ${partitions.length} (${partition.length} operations); ` +
            'no violation found before that',
        };
      case 'illegal': {
        const failure = describeFailure(model, partitionIndex, partition, outcome);
        return {
          verdict: 'illegal',
          partitions: partitions.length,
          failure,
          message: formatFailure(model, partitions.length, failure),
        };
      }
      default:
        return outcome satisfies never;
    }
  }
  return { verdict: 'ok', partitions: partitions.length };
}

function validateOperation(operation: Operation<unknown, unknown>, index: number): void {
  const { call, return: ret } = operation;
  if (Number.isNaN(call) || Number.isNaN(ret) || call > ret) {
    throw new RangeError(
      `operation ${index} (client ${operation.clientId}) has call ${call} and return ${ret}; ` +
        'expected call <= return',
    );
  }
}

/** A call or return event in the doubly linked list the search walks. */
interface Entry {
  /** Index of the operation in the partition; -1 for the list head. */
  readonly id: number;
  readonly isCall: boolean;
  readonly time: number;
  prev: Entry | null;
  next: Entry | null;
  /** For a call, its return; null otherwise. */
  match: Entry | null;
}

/**
 * One linearized operation on the search stack. Frames are immutable and point to the frame below,
 * so keeping a reference to one keeps the whole prefix it ends, at no cost.
 */
interface Frame<State> {
  readonly call: Entry;
  readonly stateBefore: State;
  readonly stateAfter: State;
  readonly parent: Frame<State> | null;
  readonly depth: number;
}

type SearchOutcome<State> =
  | { readonly kind: 'linearizable' }
  | { readonly kind: 'timed-out' }
  | {
      readonly kind: 'illegal';
      /** Top of the deepest stack reached; null if not even one operation could be linearized. */
      readonly deepest: Frame<State> | null;
      /** The operation whose return stopped the search at `deepest`. */
      readonly blockedAt: number;
    };

/** Builds the event list, sorted by time; at equal times calls come first (ops overlap). */
function buildEntries(history: readonly Operation<unknown, unknown>[]): Entry {
  const entries: Entry[] = [];
  for (const [id, operation] of history.entries()) {
    const call: Entry = {
      id,
      isCall: true,
      time: operation.call,
      prev: null,
      next: null,
      match: null,
    };
    const ret: Entry = {
      id,
      isCall: false,
      time: operation.return,
      prev: null,
      next: null,
      match: null,
    };
    call.match = ret;
    entries.push(call, ret);
  }
  entries.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.id - b.id);
  const head: Entry = {
    id: -1,
    isCall: false,
    time: -Infinity,
    prev: null,
    next: null,
    match: null,
  };
  let last = head;
  for (const entry of entries) {
    last.next = entry;
    entry.prev = last;
    last = entry;
  }
  return head;
}

/** Unlinks a call and its return. Undone by {@link unlift}, in last-in first-out order. */
function lift(call: Entry): void {
  unlink(call);
  unlink(call.match!);
}

function unlink(entry: Entry): void {
  entry.prev!.next = entry.next;
  if (entry.next !== null) entry.next.prev = entry.prev;
}

/** Relinks what {@link lift} unlinked, in reverse order, which restores the list exactly. */
function unlift(call: Entry): void {
  relink(call.match!);
  relink(call);
}

function relink(entry: Entry): void {
  entry.prev!.next = entry;
  if (entry.next !== null) entry.next.prev = entry;
}

function searchPartition<State, Input, Output>(
  model: Model<State, Input, Output>,
  partition: readonly Operation<Input, Output>[],
  deadline: number,
): SearchOutcome<State> {
  const head = buildEntries(partition);
  const linearized = new Bitset(partition.length);
  // Configurations already explored: linearized-set key (fixed length) + interned state id.
  const explored = new Set<string>();
  const stateIds = new Map<string, number>();
  const internState = (state: State): number => {
    const key = model.key(state);
    let id = stateIds.get(key);
    if (id === undefined) {
      id = stateIds.size;
      stateIds.set(key, id);
    }
    return id;
  };

  let state = model.init();
  let top: Frame<State> | null = null;
  let deepest: Frame<State> | null = null;
  let blockedAt = -1;
  let entry = head.next;
  let steps = 0;
  while (head.next !== null) {
    steps++;
    if (steps % CLOCK_CHECK_INTERVAL === 0 && performance.now() > deadline) {
      return { kind: 'timed-out' };
    }
    if (entry === null) {
      // Every call left in the list has its return after it, so the walk meets a return first.
      throw new Error('linearizability checker: event list walk ran off its end (a bug)');
    }
    if (entry.isCall) {
      const operation = partition[entry.id]!;
      const result = model.step(state, operation.input, operation.output);
      if (result.ok) {
        linearized.set(entry.id);
        const configuration = linearized.key() + internState(result.state);
        if (!explored.has(configuration)) {
          explored.add(configuration);
          const frame: Frame<State> = {
            call: entry,
            stateBefore: state,
            stateAfter: result.state,
            parent: top,
            depth: top === null ? 1 : top.depth + 1,
          };
          top = frame;
          if (frame.depth > (deepest === null ? 0 : deepest.depth)) {
            deepest = frame;
            blockedAt = -1;
          }
          state = result.state;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized.clear(entry.id);
      }
      entry = entry.next;
    } else {
      // This operation returned, and nothing before its return can be linearized now: backtrack.
      if (top === deepest && blockedAt === -1) blockedAt = entry.id;
      if (top === null) return { kind: 'illegal', deepest, blockedAt };
      const frame: Frame<State> = top;
      top = frame.parent;
      state = frame.stateBefore;
      linearized.clear(frame.call.id);
      unlift(frame.call);
      entry = frame.call.next;
    }
  }
  return { kind: 'linearizable' };
}

function describeFailure<State, Input, Output>(
  model: Model<State, Input, Output>,
  partitionIndex: number,
  partition: readonly Operation<Input, Output>[],
  outcome: Extract<SearchOutcome<State>, { kind: 'illegal' }>,
): LinearizabilityFailure<State, Input, Output> {
  const prefixIds: number[] = [];
  for (let frame = outcome.deepest; frame !== null; frame = frame.parent) {
    prefixIds.push(frame.call.id);
  }
  prefixIds.reverse();
  const inPrefix = new Set(prefixIds);
  const blockedAt = partition[outcome.blockedAt]!;
  const candidates = partition.filter(
    (operation, id) =>
      !inPrefix.has(id) && id !== outcome.blockedAt && operation.call <= blockedAt.return,
  );
  return {
    partitionIndex,
    partition,
    longestPrefix: prefixIds.map((id) => partition[id]!),
    stateAfterPrefix: outcome.deepest?.stateAfter ?? model.init(),
    blockedAt,
    candidates,
  };
}

function formatFailure<State, Input, Output>(
  model: Model<State, Input, Output>,
  partitionCount: number,
  failure: LinearizabilityFailure<State, Input, Output>,
): string {
  const describe = (operation: Operation<Input, Output>): string => {
    const what = model.describeOperation
      ? model.describeOperation(operation.input, operation.output)
      : `${show(operation.input)} -> ${isUnknownOutcome(operation.output) ? '?' : show(operation.output)}`;
    return `  client ${operation.clientId}: ${what}  [call ${operation.call}, return ${operation.return}]`;
  };
  const { longestPrefix: prefix } = failure;
  const shown = prefix.slice(-MESSAGE_PREFIX_LIMIT);
  const lines = [
    `history is not linearizable: partition ${failure.partitionIndex + 1} of ${partitionCount} ` +
      `(${failure.partition.length} operations) has no valid order`,
    `longest linearizable prefix found: ${prefix.length} operations` +
      (prefix.length > shown.length ? `, the last ${shown.length}:` : ':'),
    ...(prefix.length > shown.length ? [`  ... ${prefix.length - shown.length} earlier`] : []),
    ...shown.map(describe),
    `state after it: ${model.describeState ? model.describeState(failure.stateAfterPrefix) : show(failure.stateAfterPrefix)}`,
    'this operation returned before any remaining operation could be linearized:',
    describe(failure.blockedAt),
    'other operations that could have come next (each rejected there, or a dead end later):',
    ...(failure.candidates.length === 0 ? ['  (none)'] : []),
    ...failure.candidates.slice(0, MESSAGE_CANDIDATE_LIMIT).map(describe),
    ...(failure.candidates.length > MESSAGE_CANDIDATE_LIMIT
      ? [`  ... ${failure.candidates.length - MESSAGE_CANDIDATE_LIMIT} more`]
      : []),
  ];
  return lines.join('\n');
}

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
