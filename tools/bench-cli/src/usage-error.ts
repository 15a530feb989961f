/**
 * A command line a bench program refuses: an unknown option, a stray argument or a bad value.
 * `message` is one line that names the option at fault; {@link benchCommandLine} prints it with
 * the program's options and exits with status 2, without a stack trace.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
