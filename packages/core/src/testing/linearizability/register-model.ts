import type { Model, StepResult } from './model.ts';
import { isUnknownOutcome, type UnknownOutcome } from './operation.ts';

/** A value a register holds. Compared with `===`. */
export type RegisterValue = string | number;

/**
 * A request to a single register, as in Jepsen's etcd register test: `read` it, `write` a value,
 * or `cas` (compare-and-set): write `value` if and only if it currently holds `expected`.
 */
export type RegisterInput =
  | { readonly kind: 'read' }
  | { readonly kind: 'write'; readonly value: RegisterValue }
  | { readonly kind: 'cas'; readonly expected: RegisterValue; readonly value: RegisterValue };

/**
 * The response to a {@link RegisterInput}: for `read`, the value read, `null` if the register was
 * never written; for `cas`, whether it swapped (Jepsen's `:ok` is `true`, its `:fail` is `false`);
 * for `write`, nothing (`undefined`, ignored).
 */
export type RegisterOutput = RegisterValue | null | boolean | undefined;

/**
 * The sequential specification of one linearizable register that starts unwritten (`null`). No
 * partitioning: a history is one register.
 *
 * `step` throws a `TypeError` if a known output does not have the type its input calls for (a
 * `read` must return a value or `null`, a `cas` a boolean): that is a broken harness.
 */
export const registerModel: Model<RegisterValue | null, RegisterInput, RegisterOutput> = {
  init: () => null,
  step: stepRegister,
  key: registerKey,
  describeOperation: describeRegisterOperation,
  describeState: (state) => JSON.stringify(state),
};

function stepRegister(
  state: RegisterValue | null,
  input: RegisterInput,
  output: RegisterOutput | UnknownOutcome,
): StepResult<RegisterValue | null> {
  const unknown = isUnknownOutcome(output);
  switch (input.kind) {
    case 'read':
      if (unknown) return { ok: true, state };
      if (output !== null && typeof output !== 'string' && typeof output !== 'number') {
        throw new TypeError(
          `registerModel: a read must return a value or null, got ${typeof output}`,
        );
      }
      return { ok: output === state, state };
    case 'write':
      return { ok: true, state: input.value };
    case 'cas': {
      const swaps = state === input.expected;
      const next = swaps ? input.value : state;
      if (unknown) return { ok: true, state: next };
      if (typeof output !== 'boolean') {
        throw new TypeError(`registerModel: a cas must return a boolean, got ${typeof output}`);
      }
      return { ok: output === swaps, state: next };
    }
    default:
      return input satisfies never;
  }
}

/** Tells numbers from strings with equal text: `1` and `'1'` are different values. */
function registerKey(state: RegisterValue | null): string {
  if (state === null) return 'null';
  return typeof state === 'number' ? `n${state}` : `s${state}`;
}

function describeRegisterOperation(
  input: RegisterInput,
  output: RegisterOutput | UnknownOutcome,
): string {
  const result = isUnknownOutcome(output) ? '?' : JSON.stringify(output);
  switch (input.kind) {
    case 'read':
      return `read() -> ${result}`;
    case 'write':
      return `write(${JSON.stringify(input.value)})${isUnknownOutcome(output) ? ' -> ?' : ''}`;
    case 'cas':
      return `cas(${JSON.stringify(input.expected)}, ${JSON.stringify(input.value)}) -> ${result}`;
    default:
      return input satisfies never;
  }
}
