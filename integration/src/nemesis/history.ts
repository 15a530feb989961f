import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { type KvInput, type KvOutput, type Operation, UNKNOWN_OUTCOME } from '@tsraft/core/testing';

/** The kinds of client operations: a linearizable read and three writes. */
export type OperationKind = 'get' | 'put' | 'append' | 'cas';

/**
 * How an operation ended:
 * - `ok`: it returned a result;
 * - `failed`: it returned an error that proves it took no effect (only reads end this way: a
 *   read has no effect);
 * - `unknown`: it ended without a result (deadline, lost connection, retries exhausted): a write
 *   that ended so may have been applied, at any time after its call, or never.
 */
export type Outcome = 'ok' | 'failed' | 'unknown';

/**
 * One client operation as the nemesis records it, one JSON line each in `history.jsonl`.
 * Times are milliseconds since the run started, on the harness' one clock.
 */
export interface RecordedOperation {
  /** Unique in the run, in order of invocation. */
  readonly id: number;
  readonly client: number;
  /** The round (one fault) the operation was invoked in; its keys belong to that round only. */
  readonly round: number;
  readonly kind: OperationKind;
  readonly key: string;
  /** put, append, cas: the value written (unique per write: its write id). */
  readonly value?: string;
  /** cas: the value expected. */
  readonly expected?: string;
  /** Writes: the identity the node records in `applied_write`. */
  readonly writeId?: string;
  /** The node a read went to, or `any` (through the failover link, which picks). */
  readonly via: string;
  readonly call: number;
  /** `null` when the outcome is unknown. */
  readonly return: number | null;
  readonly outcome: Outcome;
  /** get: the value read ('' for an absent key); cas: whether it swapped. */
  readonly output?: string | boolean;
  /** Writes that returned: the log index that applied them. */
  readonly index?: number;
  /** Why it failed or is unknown. */
  readonly error?: string;
}

/** Whether `op` is a write (put, append or cas). */
export function isWrite(op: RecordedOperation): boolean {
  return op.kind !== 'get';
}

/**
 * The operations as the core's linearizability checker takes them (`checkOperations` with
 * `kvModel`): reads that failed are left out (they took no effect), unknown outcomes become
 * `UNKNOWN_OUTCOME` with `return: Infinity` (possibly applied, at any time after the call).
 */
export function toCheckerOperations(
  history: readonly RecordedOperation[],
): Operation<KvInput, KvOutput>[] {
  const operations: Operation<KvInput, KvOutput>[] = [];
  for (const op of history) {
    if (op.outcome === 'failed') continue;
    const input = checkerInput(op);
    if (op.outcome === 'unknown') {
      operations.push({
        clientId: op.client,
        input,
        call: op.call,
        output: UNKNOWN_OUTCOME,
        return: Infinity,
      });
      continue;
    }
    const output: KvOutput = op.kind === 'get' || op.kind === 'cas' ? op.output : undefined;
    operations.push({
      clientId: op.client,
      input,
      call: op.call,
      output,
      return: op.return as number,
    });
  }
  return operations;
}

function checkerInput(op: RecordedOperation): KvInput {
  switch (op.kind) {
    case 'get':
      return { kind: 'get', key: op.key };
    case 'put':
      return { kind: 'put', key: op.key, value: op.value as string };
    case 'append':
      return { kind: 'append', key: op.key, value: op.value as string };
    case 'cas':
      return {
        kind: 'cas',
        key: op.key,
        expected: op.expected as string,
        value: op.value as string,
      };
    default:
      return op.kind satisfies never;
  }
}

/** Reads a `history.jsonl` written by a nemesis run. */
export async function readHistory(
  path: string,
  options: { signal?: AbortSignal } = {},
): Promise<RecordedOperation[]> {
  const history: RecordedOperation[] = [];
  const lines = createInterface({
    input: createReadStream(path, options.signal ? { signal: options.signal } : {}),
    crlfDelay: Infinity,
  });
  for await (const line of lines) {
    if (line.trim() !== '') history.push(JSON.parse(line) as RecordedOperation);
  }
  return history;
}
