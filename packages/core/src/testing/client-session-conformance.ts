import { describe, expect, it } from 'vitest';
import type { ClientSessionsOptions } from '../client-sessions.ts';

/** One command with a session, as a state machine under test receives it. */
export interface SessionCommand {
  readonly clientId: string;
  readonly seq: number;
  /** The leader-stamped timestamp of its entry. */
  readonly timestamp: number;
  /** Unique per command: what executing it must answer. */
  readonly token: string;
  /**
   * What the command asks, which its digest covers: a retry asks the same as the command it
   * repeats, a command that reuses another's stamp asks something else. The state machine under
   * test must propose something that differs exactly when this does.
   */
  readonly command: string;
}

/**
 * What a state machine under test answered to a command: the result it executed or recorded (a
 * token), or that its session is expired.
 */
export type SessionAnswer =
  | { readonly result: string }
  | { readonly expired: true }
  | { readonly conflict: true };

/** A fresh state machine under test, with the given retention rules. */
export interface ClientSessionFixture {
  /**
   * Applies `batches` in order, each as one batch of consecutive entries; a command that
   * executes answers its own token, a duplicate answers the token recorded for its session's
   * command, an expired one `{ expired: true }`, one whose stamp a different command used
   * `{ conflict: true }`.
   */
  apply(batches: readonly (readonly SessionCommand[])[]): Promise<SessionAnswer[][]>;
}

type Expected = 'new' | 'duplicate' | 'expired' | 'conflict';

interface Case {
  readonly name: string;
  readonly options: ClientSessionsOptions;
  /**
   * Batches of `[clientId, seq, ms after T0, expected, what it asks]`; by default a command asks
   * `clientId:seq` (a retry asks what the first attempt asked).
   */
  readonly batches: readonly (readonly (
    | readonly [string, number, number, Expected]
    | readonly [string, number, number, Expected, string]
  )[])[];
}

const T0 = 1_700_000_000_000;

/**
 * The retention rules of client sessions (exactly-once, Raft thesis 6.3), as every state machine
 * with sessions must answer them, in entry time (never a local clock), whatever its batches:
 * - a command of an unknown client, or of one idle longer than `forgetAfterMs`: new;
 * - idle longer than `expireAfterMs`, or `seq` at or below `highest seq - retainPerClient`:
 *   expired, never executed;
 * - a result recorded for `(clientId, seq)`: a duplicate, answered with it, when the command asks
 *   what the recorded one asked; a conflict, never executed, when it asks something else;
 * - otherwise new.
 */
const CASES: readonly Case[] = [
  {
    name: 'a repeated command is a duplicate, in its own batch and in later ones',
    options: {},
    batches: [
      [
        ['a', 1, 0, 'new'],
        ['a', 1, 1, 'duplicate'],
        ['b', 1, 2, 'new'],
      ],
      [
        ['a', 1, 3, 'duplicate'],
        ['b', 2, 4, 'new'],
      ],
    ],
  },
  {
    name: 'commands of one client may arrive out of order (pipelined clients)',
    options: {},
    batches: [
      [
        ['a', 3, 0, 'new'],
        ['a', 1, 1, 'new'],
      ],
      [
        ['a', 2, 2, 'new'],
        ['a', 3, 3, 'duplicate'],
        ['a', 1, 4, 'duplicate'],
      ],
    ],
  },
  {
    name: 'results within retainPerClient of the highest sequence number are kept, older ones expired',
    options: { retainPerClient: 3 },
    batches: [
      [
        ['a', 1, 0, 'new'],
        ['a', 2, 1, 'new'],
        ['a', 3, 2, 'new'],
      ],
      [
        ['a', 4, 3, 'new'],
        ['a', 5, 4, 'new'],
      ],
      [
        ['a', 1, 5, 'expired'],
        ['a', 2, 6, 'expired'],
        ['a', 3, 7, 'duplicate'],
        ['a', 5, 8, 'duplicate'],
        ['a', 6, 9, 'new'],
        ['b', 1, 10, 'new'],
      ],
    ],
  },
  {
    name: 'retention counts sequence numbers, not results: a jump expires what it leaves behind',
    options: { retainPerClient: 3 },
    batches: [
      [
        ['a', 1, 0, 'new'],
        ['a', 10, 1, 'new'],
      ],
      [
        ['a', 1, 2, 'expired'],
        ['a', 7, 3, 'expired'],
        ['a', 8, 4, 'new'],
        ['a', 10, 5, 'duplicate'],
      ],
    ],
  },
  {
    name: 'an idle session expires after expireAfterMs and is forgotten after forgetAfterMs',
    options: { expireAfterMs: 100, forgetAfterMs: 300 },
    batches: [
      [['a', 1, 0, 'new']],
      [['a', 2, 50, 'new']],
      [
        ['a', 3, 151, 'expired'],
        ['a', 2, 152, 'expired'],
      ],
      [
        ['a', 1, 351, 'new'],
        ['a', 2, 352, 'new'],
      ],
    ],
  },
  {
    name: 'a session stays alive while it records commands',
    options: { expireAfterMs: 100, forgetAfterMs: 300 },
    batches: [
      [['a', 1, 0, 'new']],
      [['a', 2, 90, 'new']],
      [['a', 3, 180, 'new']],
      [['a', 2, 270, 'duplicate']],
    ],
  },
  {
    name: 'a stamp reused for a different command is a conflict, never executed; the first command stays answerable',
    options: {},
    batches: [
      [
        ['a', 1, 0, 'new', 'put x'],
        ['a', 1, 1, 'conflict', 'put y'],
      ],
      [
        ['a', 1, 2, 'duplicate', 'put x'],
        ['a', 1, 3, 'conflict', 'delete x'],
        ['a', 2, 4, 'new', 'put y'],
        ['b', 1, 5, 'new', 'put y'],
      ],
    ],
  },
  {
    name: 'a leader clock that steps back does not make a session younger',
    options: { expireAfterMs: 100, forgetAfterMs: 300 },
    batches: [[['a', 1, 0, 'new']], [['b', 1, 200, 'new']], [['a', 2, 50, 'expired']]],
  },
];

/**
 * Declares vitest tests that check a state machine's client sessions against the retention rules
 * above (the same cases for every implementation: `ClientSessions` in the core, the Postgres
 * state machine's sessions in `@tsraft/pg-storage`). Call it at the top level of a test file;
 * `factory` makes a fresh state machine with the given options for each test.
 */
export function describeClientSessionConformance(
  name: string,
  factory: (options: ClientSessionsOptions) => Promise<ClientSessionFixture>,
): void {
  describe(`client session conformance: ${name}`, () => {
    for (const testCase of CASES) {
      it(testCase.name, async () => {
        let counter = 0;
        const batches = testCase.batches.map((batch) =>
          batch.map(([clientId, seq, ms, , command]) => ({
            clientId,
            seq,
            timestamp: T0 + ms,
            token: `${clientId}:${seq}:${++counter}`,
            command: command ?? `${clientId}:${seq}`,
          })),
        );
        const fixture = await factory(testCase.options);
        const answers = await fixture.apply(batches);
        const tokens = new Map<string, string>();
        const outcomes = batches.map((batch, b) =>
          batch.map((command, i): Expected | string => {
            const answer = answers[b]?.[i];
            const key = `${command.clientId}:${command.seq}`;
            if (answer === undefined) return 'no answer';
            if ('expired' in answer) return 'expired';
            if ('conflict' in answer) return 'conflict';
            if (answer.result === command.token) {
              tokens.set(key, command.token);
              return 'new';
            }
            return answer.result === tokens.get(key)
              ? 'duplicate'
              : `answered ${answer.result}, not its own or a recorded token`;
          }),
        );
        expect(outcomes).toEqual(testCase.batches.map((batch) => batch.map((c) => c[3])));
      });
    }
  });
}
