import type { Model, StepResult } from './model.ts';
import { isUnknownOutcome, type Operation, type UnknownOutcome } from './operation.ts';

/**
 * A request to a string key/value store:
 * - `get` reads the value of `key`;
 * - `put` sets it to `value`;
 * - `append` appends `value` to it;
 * - `cas` sets it to `value` if and only if it currently equals `expected`.
 *
 * An absent key reads as the empty string: a harness must map "not found" to `''`.
 */
export type KvInput =
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'append'; readonly key: string; readonly value: string }
  | {
      readonly kind: 'cas';
      readonly key: string;
      readonly expected: string;
      readonly value: string;
    };

/**
 * The response to a {@link KvInput}: for `get`, the value read (a string, `''` if absent); for
 * `cas`, whether it swapped (a boolean); for `put` and `append`, nothing (`undefined`, ignored).
 */
export type KvOutput = string | boolean | undefined;

/**
 * The sequential specification of a linearizable string key/value store. It partitions histories
 * by key (keys are independent objects, so each is checked on its own) and its state is the value
 * of the one key of a partition: `step` relies on that partitioning and is not meant to be called
 * on a history mixing keys.
 *
 * `step` throws a `TypeError` if a known output does not have the type its input calls for (a
 * `get` must return a string, a `cas` a boolean): that is a broken harness, not a broken store.
 */
export const kvModel: Model<string, KvInput, KvOutput> = {
  init: () => '',
  step: stepKv,
  key: (state) => state,
  partition: partitionByKey,
  describeOperation: describeKvOperation,
  describeState: (state) => JSON.stringify(state),
};

function stepKv(
  state: string,
  input: KvInput,
  output: KvOutput | UnknownOutcome,
): StepResult<string> {
  const unknown = isUnknownOutcome(output);
  switch (input.kind) {
    case 'get':
      if (unknown) return { ok: true, state };
      if (typeof output !== 'string') throw outputTypeError(input, 'a string', output);
      return { ok: output === state, state };
    case 'put':
      return { ok: true, state: input.value };
    case 'append':
      return { ok: true, state: state + input.value };
    case 'cas': {
      const swaps = state === input.expected;
      const next = swaps ? input.value : state;
      if (unknown) return { ok: true, state: next };
      if (typeof output !== 'boolean') throw outputTypeError(input, 'a boolean', output);
      return { ok: output === swaps, state: next };
    }
    default:
      return input satisfies never;
  }
}

function outputTypeError(input: KvInput, expected: string, output: unknown): TypeError {
  return new TypeError(
    `kvModel: the output of ${input.kind}(${JSON.stringify(input.key)}) must be ${expected}, ` +
      `got ${typeof output}`,
  );
}

function partitionByKey(
  history: readonly Operation<KvInput, KvOutput>[],
): Operation<KvInput, KvOutput>[][] {
  const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
  for (const operation of history) {
    const part = byKey.get(operation.input.key);
    if (part === undefined) byKey.set(operation.input.key, [operation]);
    else part.push(operation);
  }
  return [...byKey.values()];
}

function describeKvOperation(input: KvInput, output: KvOutput | UnknownOutcome): string {
  const key = JSON.stringify(input.key);
  const result = isUnknownOutcome(output) ? '?' : JSON.stringify(output);
  switch (input.kind) {
    case 'get':
      return `get(${key}) -> ${result}`;
    case 'put':
      return `put(${key}, ${JSON.stringify(input.value)})${isUnknownOutcome(output) ? ' -> ?' : ''}`;
    case 'append':
      return `append(${key}, ${JSON.stringify(input.value)})${isUnknownOutcome(output) ? ' -> ?' : ''}`;
    case 'cas':
      return `cas(${key}, ${JSON.stringify(input.expected)}, ${JSON.stringify(input.value)}) -> ${result}`;
    default:
      return input satisfies never;
  }
}
