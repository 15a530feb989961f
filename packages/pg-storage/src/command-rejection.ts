/**
 * A command refused on purpose by its handler (a domain error: insufficient funds, unknown
 * account). The state machine undoes the command's effects and answers an error result
 * `{ name, message, code }`; since handlers are deterministic, every node records the same one.
 * The proposer's `RaftNode.propose` rejects with a `CommandError` carrying `code`.
 *
 * Only the name, message and code are kept: they must not depend on anything local (no stack,
 * no host name, no time other than `ctx.timestamp`).
 */
export class CommandRejection extends Error {
  override name = 'CommandRejection';
  /** A stable, machine-readable reason, e.g. `insufficient_funds`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { name?: string }) {
    super(message);
    this.code = code;
    if (options?.name !== undefined) this.name = options.name;
  }
}

/** A {@link CommandRejection} to throw from a handler: `throw domainError('code', 'message')`. */
export function domainError(
  code: string,
  message: string,
  options?: { name?: string },
): CommandRejection {
  return new CommandRejection(code, message, options);
}
