import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { UsageError } from './usage-error.ts';

/** The command line a bench program takes. */
export interface CommandLineSpec<O extends ParseArgsOptionsConfig> {
  /** How the program is named in its messages, e.g. `bench:hop`. */
  readonly program: string;
  /** The options, as `node:util` `parseArgs` takes them (strict: any other option is refused). */
  readonly options: O;
  /**
   * Options the program passes to itself (e.g. a child process' role): accepted, but not named in
   * the usage error's list of options. Default none.
   */
  readonly internal?: readonly (keyof O & string)[];
  /** Whether bare arguments (files, folders) are accepted. Default false: one is refused. */
  readonly allowPositionals?: boolean;
  /**
   * The text `--help` (or `-h`) prints before the program exits with status 0. Default none: the
   * program has no `--help`, and `--help` is refused like any unknown option.
   */
  readonly usage?: string;
}

type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ options: O; allowPositionals: true }>
>;

/** A command line as parsed, before the program reads its values. */
export interface CommandLine<O extends ParseArgsOptionsConfig> {
  /** Each option's value (its default when not given), typed by the spec's options. */
  readonly values: Parsed<O>['values'];
  /** The bare arguments, in order (always empty unless the spec allows them). */
  readonly positionals: readonly string[];
  /** Whether `--help` or `-h` was given (only ever true when the spec has a usage text). */
  readonly help: boolean;
}

/**
 * Parses `args` by `spec`. Throws a {@link UsageError} naming the option at fault for an unknown
 * option, an option without its value, a value given to a boolean option, or a bare argument the
 * spec does not allow. Reads nothing but `args`.
 */
export function parseCommandLine<const O extends ParseArgsOptionsConfig>(
  spec: CommandLineSpec<O>,
  args: readonly string[],
): CommandLine<O> {
  const options: ParseArgsOptionsConfig =
    spec.usage === undefined
      ? spec.options
      : { ...spec.options, help: { type: 'boolean', short: 'h' } };
  let parsed: ReturnType<
    typeof parseArgs<{ options: ParseArgsOptionsConfig; allowPositionals: true }>
  >;
  try {
    parsed = parseArgs({
      args: [...args],
      options,
      allowPositionals: spec.allowPositionals ?? false,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(oneLine(error instanceof Error ? error.message : String(error)), {
      cause: error,
    });
  }
  const { help, ...values } = parsed.values;
  return {
    values: values as Parsed<O>['values'],
    positionals: parsed.positionals,
    help: help === true,
  };
}

/**
 * A parseArgs message in one line: its first sentence, which names the option ("Unknown option
 * '--x'"), and its advice on a value that starts with a dash (`--from -1` is ambiguous), but not
 * its advice on positional arguments after `--`, which no bench program takes that way.
 */
function oneLine(message: string): string {
  const sentences = message.split(/(?<=[.?])\s+/).map((sentence) => sentence.replace(/[.?]$/, ''));
  const dash = sentences.find((sentence) => sentence.startsWith('To specify an option argument'));
  const first = sentences[0] ?? message;
  return dash === undefined ? first : `${first}; ${dash.charAt(0).toLowerCase()}${dash.slice(1)}`;
}

/**
 * The one line a refused command line prints: the program, what is wrong, and the options the
 * program takes (e.g. `bench:hop: --seconds must be ... (options: --seconds, --inflight)`).
 */
export function usageLine<O extends ParseArgsOptionsConfig>(
  spec: CommandLineSpec<O>,
  message: string,
): string {
  const internal = new Set<string>(spec.internal ?? []);
  const names = Object.keys(spec.options).filter((name) => !internal.has(name));
  if (spec.usage !== undefined) names.push('help');
  const options = names.length === 0 ? 'no options' : `options: --${names.join(', --')}`;
  return `${spec.program}: ${message} (${options})`;
}

/**
 * A bench program's options: parses its command line (`args`, default the process' own) by
 * `spec`, then `read` turns the values into what the program uses, checking them with the
 * validators of this package (or throwing a {@link UsageError} itself). On a {@link UsageError}
 * from either, prints {@link usageLine} to stderr and exits with status 2: one line, no stack
 * trace. On `--help` (when the spec has a usage text) prints it and exits with status 0. Any
 * other error from `read` is not caught.
 */
export async function benchCommandLine<const O extends ParseArgsOptionsConfig, T>(
  spec: CommandLineSpec<O>,
  read: (line: CommandLine<O>) => T | Promise<T>,
  args: readonly string[] = process.argv.slice(2),
): Promise<T> {
  try {
    const line = parseCommandLine(spec, args);
    if (line.help) {
      console.info(spec.usage);
      process.exit(0);
    }
    return await read(line);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(usageLine(spec, error.message));
    process.exit(2);
  }
}
