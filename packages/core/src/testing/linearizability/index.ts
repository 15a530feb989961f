/**
 * A linearizability checker (Wing & Gong's search with Lowe's improvements) and the sequential
 * models tsraft's tests check histories against.
 */
export {
  type CheckOptions,
  type CheckResult,
  checkOperations,
  type LinearizabilityFailure,
} from './checker.ts';
export { type KvInput, type KvOutput, kvModel } from './kv-model.ts';
export type { Model, StepResult } from './model.ts';
export {
  isUnknownOutcome,
  type Operation,
  UNKNOWN_OUTCOME,
  type UnknownOutcome,
} from './operation.ts';
export {
  type RegisterInput,
  type RegisterOutput,
  type RegisterValue,
  registerModel,
} from './register-model.ts';
