import { z } from 'zod';
import type { CommandMap, CommandOf } from './command-definition.ts';

/**
 * The zod schema of the commands of `commands` as they are proposed, `{ name, input }`, derived
 * from each command's own `input` schema: a discriminated union on `name`. Give it to
 * `@tsraft/trpc-transport`'s `createRaftProcedures({ command })` instead of writing the union a
 * second time; it checks a command the way the state machine does before it reaches the log.
 * Throws a `TypeError` for a map without commands.
 */
export function commandSchema<C extends CommandMap>(
  commands: C,
): z.ZodType<CommandOf<C>, CommandOf<C>> {
  const members = Object.entries(commands).map(([name, definition]) =>
    z.object({ name: z.literal(name), input: definition.input }),
  );
  const [first, ...rest] = members;
  if (first === undefined) throw new TypeError('commandSchema needs at least one command');
  // The union's own types are the schemas' outputs; callers propose the commands' inputs, which
  // the state machine parses again on every node.
  return z.discriminatedUnion('name', [first, ...rest]) as unknown as z.ZodType<
    CommandOf<C>,
    CommandOf<C>
  >;
}
