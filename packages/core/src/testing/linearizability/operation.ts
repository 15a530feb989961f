/**
 * The output of an operation whose outcome the client never learned: it timed out, or the client
 * crashed. Such an operation may or may not have taken effect. Put it in
 * {@link Operation.output} together with `return: Infinity`.
 *
 * It is a registered symbol (`Symbol.for`), so copies of this module loaded twice still agree.
 */
export const UNKNOWN_OUTCOME: unique symbol = Symbol.for('@tsraft/core/testing.unknownOutcome');

/** The type of {@link UNKNOWN_OUTCOME}. */
export type UnknownOutcome = typeof UNKNOWN_OUTCOME;

/**
 * One client operation of a history: what was asked, what came back, and the interval of time in
 * which it ran. The checker only relates `call` and `return` times to each other, so any clock
 * common to all clients works (a logical counter of events is fine).
 *
 * Contract:
 * - `call <= return`; neither is `NaN`.
 * - An operation whose outcome is unknown has `output: UNKNOWN_OUTCOME` and `return: Infinity`:
 *   it may take effect at any point after its call, or never (the checker may order it after every
 *   other operation, where its effect is invisible). A finite `return` with an unknown output is
 *   also accepted and means "took effect, if at all, before `return`".
 * - An operation that returns at the same instant another is called counts as concurrent with it.
 * - Operations that definitely did not take effect (a clean failure) should be left out.
 * - The checker does not mutate the operations, nor their inputs and outputs.
 */
export interface Operation<Input, Output> {
  /** The client that issued the operation. Only used in reports. */
  readonly clientId: number;
  /** What the client asked for. */
  readonly input: Input;
  /** When the client sent the request. */
  readonly call: number;
  /** The response, or {@link UNKNOWN_OUTCOME} when the client never learned it. */
  readonly output: Output | UnknownOutcome;
  /** When the client received the response; `Infinity` if it never did. */
  readonly return: number;
}

/** Whether `output` is {@link UNKNOWN_OUTCOME}; narrows the type. */
export function isUnknownOutcome<Output>(
  output: Output | UnknownOutcome,
): output is UnknownOutcome {
  return output === UNKNOWN_OUTCOME;
}
