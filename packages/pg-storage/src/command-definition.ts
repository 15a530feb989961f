import type { ClientSession, RandomSource } from '@tsraft/core';
import type { Transaction } from 'kysely';
import type { z } from 'zod';

/**
 * What a command handler may know besides its input and the database: everything here is the
 * same on every node that applies the entry, so a handler that uses only this stays
 * deterministic.
 */
export interface CommandContext {
  /** Log index of the entry being applied. */
  readonly index: number;
  /** Term of the entry being applied. */
  readonly term: number;
  /** Leader-stamped wall-clock time of the entry, in ms since the epoch (never a local clock). */
  readonly timestamp: number;
  /** `timestamp` as a new `Date`: use it wherever a handler would call `new Date()`. */
  now(): Date;
  /** Uniform numbers in [0, 1), seeded from the entry's index and term: the same on every node. */
  readonly random: RandomSource;
  /** The client session of the command, when it carries one. */
  readonly session: ClientSession | undefined;
}

/**
 * One command of a Postgres state machine: the schema of its input and the handler that executes
 * it. Define it with {@link defineCommand}; the name is its key in the state machine's
 * `commands`.
 */
export interface CommandDefinition<DB, Schema extends z.ZodType, Result> {
  /**
   * Zod schema of the input. Checked before a proposal reaches the log, and again when the entry
   * is applied. It must describe JSON data (entries are JSON) and must not depend on the clock
   * or randomness.
   */
  readonly input: Schema;
  /**
   * Executes the command inside the batch's transaction and returns its result (JSON data).
   *
   * Contract: deterministic (see the package README): read and write only replicated tables
   * through `trx`; take time and randomness from `ctx`; no I/O outside `trx`. Throw
   * `CommandRejection` (see `domainError`) to refuse the command: its effects are undone and the
   * caller gets an error result. Any other error is fatal: the whole batch is rolled back and the
   * node stops. Never catch a database error and carry on: Postgres aborts the transaction.
   */
  handler(trx: Transaction<DB>, input: z.output<Schema>, ctx: CommandContext): Promise<Result>;
  /**
   * Optional: executes a run of consecutive commands of this name at once, with set-based
   * statements (one multi-row `INSERT ... ON CONFLICT`, `unnest(...)`, `UPDATE ... FROM (VALUES
   * ...)`) instead of one round trip per statement per command. Called for runs of two or more
   * commands of a batch (never with savepoints); `handler` still runs single commands and every
   * command after a domain error.
   *
   * Contract: it must leave the replicated tables exactly as running `handler` on each command
   * in order would, and return each command's result in order (one per command), including
   * read-your-writes inside the run (a later `put` of the same key wins; an `INSERT ... ON
   * CONFLICT DO UPDATE` cannot touch one row twice, so fold such commands first). When any
   * command of the run would be refused, throw a domain error (`CommandRejection`, or let the
   * constraint violation propagate): the state machine undoes the run and executes its commands
   * one by one with `handler`, so each refusal stays its own command's. The same rules of
   * determinism hold as for `handler`.
   */
  readonly batchHandler?: (
    trx: Transaction<DB>,
    commands: readonly BatchedCommand<z.output<Schema>>[],
  ) => Promise<readonly Result[]>;
}

/** One command of a run given to {@link CommandDefinition.batchHandler}. */
export interface BatchedCommand<Input> {
  readonly input: Input;
  readonly ctx: CommandContext;
}

/**
 * Declares a command; returns its argument, typed. `DB` is inferred from the handler's `trx`
 * annotation (`Transaction<Database>`), `Result` from what it returns.
 *
 * ```ts
 * const deposit = defineCommand({
 *   input: z.object({ account: z.string(), amount: z.number().int().positive() }),
 *   handler: async (trx: Transaction<Database>, input, ctx) => { ... return { balance } },
 * });
 * ```
 */
export function defineCommand<DB, Schema extends z.ZodType, Result>(
  definition: CommandDefinition<DB, Schema, Result>,
): CommandDefinition<DB, Schema, Result> {
  return definition;
}

/** Any command definition, whatever its database, input and result types. */
// biome-ignore lint/suspicious/noExplicitAny: a definition of any database and result fits here.
export type AnyCommandDefinition = CommandDefinition<any, z.ZodType, any>;

/** A state machine's commands, by name. */
export type CommandMap = { readonly [name: string]: AnyCommandDefinition };

/** Names of the commands of `C`. */
export type CommandName<C extends CommandMap> = keyof C & string;

/** What a caller passes as the input of command `K` (the schema's input type). */
export type CommandInput<C extends CommandMap, K extends CommandName<C>> = z.input<C[K]['input']>;

/** What command `K`'s handler resolves with. */
export type CommandResultFor<C extends CommandMap, K extends CommandName<C>> =
  // biome-ignore lint/suspicious/noExplicitAny: only the result type is looked at.
  C[K] extends CommandDefinition<any, any, infer Result> ? Result : never;

/** The commands of `C` as values: `{ name: 'transfer', input: { ... } } | ...`. */
export type CommandOf<C extends CommandMap> = {
  [K in CommandName<C>]: { readonly name: K; readonly input: CommandInput<C, K> };
}[CommandName<C>];

/** The union of the results of the commands of `C`. */
export type ResultOf<C extends CommandMap> = {
  [K in CommandName<C>]: CommandResultFor<C, K>;
}[CommandName<C>];

/**
 * The result of each command of `C`, by name: `{ transfer: TransferResult; ... }`. Pass it as the
 * map of results of `@tsraft/trpc-transport`'s `createRaftProcedures` (its third type argument) so
 * `ctx.raft.propose({ name: 'transfer', input })` resolves with that command's own result.
 */
export type ResultMap<C extends CommandMap> = {
  [K in CommandName<C>]: CommandResultFor<C, K>;
};
