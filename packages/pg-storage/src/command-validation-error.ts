/**
 * A command that is not one of the state machine's, or whose input fails its schema. Raised by
 * `validateCommand` before the command reaches the log: nothing was proposed, and retrying the
 * same command cannot succeed.
 */
export class CommandValidationError extends Error {
  override name = 'CommandValidationError';
  /** The command's name, when it had one. */
  readonly command: string | undefined;
  /** What is wrong, one line per problem (`path: message`). */
  readonly issues: readonly string[];

  constructor(
    command: string | undefined,
    issues: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(
      `invalid command${command === undefined ? '' : ` "${command}"`}: ${issues.join('; ')}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.command = command;
    this.issues = issues;
  }
}
