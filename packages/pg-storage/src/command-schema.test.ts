import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { type CommandOf, defineCommand } from './command-definition.ts';
import { commandSchema } from './command-schema.ts';

const commands = {
  open: defineCommand({
    input: z.object({ id: z.string().min(1) }),
    handler: async () => ({ opened: true }),
  }),
  transfer: defineCommand({
    input: z.object({ from: z.string(), to: z.string(), amount: z.number().int().positive() }),
    handler: async () => ({ moved: 1 }),
  }),
};

describe('commandSchema: the schema of proposed commands, derived from the commands', () => {
  it('accepts each command by name with its own input schema, and refuses everything else', () => {
    const schema = commandSchema(commands);
    expectTypeOf(schema.parse).returns.toEqualTypeOf<CommandOf<typeof commands>>();
    expect(schema.parse({ name: 'open', input: { id: 'a' } })).toEqual({
      name: 'open',
      input: { id: 'a' },
    });
    expect(schema.safeParse({ name: 'open', input: { id: '' } }).success).toBe(false);
    expect(
      schema.safeParse({ name: 'transfer', input: { from: 'a', to: 'b', amount: -5 } }).success,
    ).toBe(false);
    expect(schema.safeParse({ name: 'close', input: {} }).success).toBe(false);
    expect(schema.safeParse({ input: { id: 'a' } }).success).toBe(false);
  });

  it('refuses a map without commands', () => {
    expect(() => commandSchema({})).toThrow(TypeError);
  });
});
