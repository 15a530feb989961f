import type { Operation, UnknownOutcome } from './operation.ts';

/** The result of applying one operation to a state: whether it was legal, and the next state. */
export interface StepResult<State> {
  /** Whether the operation, with the output it returned, is legal in the state it was applied to. */
  readonly ok: boolean;
  /** The state after the operation. Ignored when `ok` is false. */
  readonly state: State;
}

/**
 * A sequential specification: what a single, atomic copy of the system would answer. The checker
 * looks for an order of the operations, consistent with their real-time order, that this
 * specification accepts (Herlihy & Wing, "Linearizability", 1990).
 *
 * Contract:
 * - `init` and `step` are pure and deterministic. `step` must not mutate the state it receives:
 *   the checker keeps old states to backtrack to.
 * - When `output` is {@link UnknownOutcome}, `step` must accept the operation in every state
 *   (`ok: true`) and return the state as if it had taken effect; the checker models "never took
 *   effect" by ordering it last.
 * - `key` identifies a state: two states with equal keys must be interchangeable for every future
 *   operation. The checker memoizes on it (Lowe, "Testing for linearizability", 2017), so a key that
 *   conflates different states makes the checker unsound, and one that tells equal states apart only
 *   makes it slower.
 * - `partition`, when given, splits a history into independent sub-histories (one per key of a
 *   key/value store, say) whose union is the history. The history is linearizable if and only if
 *   each part is (linearizability is local: Herlihy & Wing, Theorem 1). Each part is checked from
 *   `init()`.
 */
export interface Model<State, Input, Output> {
  /** The state before any operation. */
  init(): State;
  /** Applies `input`, which returned `output`, to `state`. */
  step(state: State, input: Input, output: Output | UnknownOutcome): StepResult<State>;
  /** A string that identifies `state` (see the contract above). */
  key(state: State): string;
  /** Splits a history into independent parts; by default the history is one part. */
  partition?(
    history: readonly Operation<Input, Output>[],
  ): readonly (readonly Operation<Input, Output>[])[];
  /** Renders an operation for failure reports, e.g. `get("x") -> "1"`. */
  describeOperation?(input: Input, output: Output | UnknownOutcome): string;
  /** Renders a state for failure reports. */
  describeState?(state: State): string;
}
