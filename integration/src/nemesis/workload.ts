import { setTimeout as sleep } from 'node:timers/promises';
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import { type RandomSource, randomInt } from '@tsraft/core';
import { raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport';
import type { OperationKind, Outcome, RecordedOperation } from './history.ts';
import type { NemesisAppRouter } from './node/nemesis-app.ts';

/** Options of {@link Workload}. */
export interface WorkloadOptions {
  /** The nodes' app URLs by id. */
  readonly nodes: Readonly<Record<string, string>>;
  /** Logical clients, each one operation at a time. */
  readonly clients: number;
  /** Keys per round; each round has keys of its own. */
  readonly keysPerRound: number;
  /** Deadline of one operation; past it the operation ends with an unknown outcome. */
  readonly opTimeoutMs: number;
  /** Chooses operations, keys and nodes. */
  readonly random: RandomSource;
  /** A prefix that makes the clients' session ids unique to the run. */
  readonly runId: string;
  /** The harness clock: milliseconds since the run started. */
  readonly now: () => number;
  /** Receives each operation once it ended. */
  readonly record: (op: RecordedOperation) => void;
}

/** The share of each kind of operation, out of 100. */
const MIX: readonly (readonly [OperationKind, number])[] = [
  ['get', 40],
  ['put', 15],
  ['append', 25],
  ['cas', 20],
];

/**
 * Logical clients of the nemesis app, each through the app's tRPC endpoints with the client
 * links a user would use: writes through `raftSessionLink` (exactly-once stamps, retries) and
 * `raftFailoverLink` (moves to the leader or on to the next node); linearizable reads either the
 * same way or straight at one chosen node, leader or follower, in one attempt. Every operation
 * has a deadline; one that passes it ends with an unknown outcome. Each round has keys of its
 * own, so that a round's history is checked on its own.
 */
export class Workload {
  readonly #options: WorkloadOptions;
  readonly #direct: ReadonlyMap<string, TRPCClient<NemesisAppRouter>>;
  /**
   * Each client's own session client, for the whole run: its session (client id and sequence
   * numbers) must never restart, or the state machine would answer a new command with the
   * recorded result of an old one that had the same stamp.
   */
  readonly #sessions: readonly TRPCClient<NemesisAppRouter>[];
  /** Each client's count of writes, for their ids. */
  readonly #writes: number[];
  #round = 0;
  #running = false;
  #loops: Promise<void>[] = [];
  #nextId = 0;

  constructor(options: WorkloadOptions) {
    this.#options = options;
    this.#direct = new Map(
      Object.entries(options.nodes).map(([id, url]) => [
        id,
        createTRPCClient<NemesisAppRouter>({ links: [httpLink({ url })] }),
      ]),
    );
    const ids = Object.keys(options.nodes);
    this.#sessions = Array.from({ length: options.clients }, (_, client) =>
      this.#sessionClient(client, ids[client % ids.length] as string),
    );
    this.#writes = Array.from({ length: options.clients }, () => 0);
  }

  /** Starts (or resumes) the clients on the keys of `round`. */
  start(round: number): void {
    if (this.#running) throw new Error('the workload is running');
    this.#round = round;
    this.#running = true;
    this.#loops = Array.from({ length: this.#options.clients }, (_, client) =>
      this.#clientLoop(client),
    );
  }

  /** Stops invoking operations and waits until those in flight ended (by their deadlines). */
  async pause(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#loops = [];
  }

  async #clientLoop(client: number): Promise<void> {
    const { random } = this.#options;
    const ids = Object.keys(this.#options.nodes);
    const cluster = this.#sessions[client] as TRPCClient<NemesisAppRouter>;
    /** The value this client last saw per key: what its compare-and-sets expect. */
    const seen = new Map<string, string>();
    while (this.#running) {
      const round = this.#round;
      const key = `r${round}-k${randomInt(random, 0, this.#options.keysPerRound)}`;
      const kind = pickKind(random);
      const written = (this.#writes[client] ?? 0) + 1;
      this.#writes[client] = written;
      const writeId = `r${round}.c${client}.${written}`;
      const direct = kind === 'get' && random.next() < 0.5;
      const via = direct ? (ids[randomInt(random, 0, ids.length)] as string) : 'any';
      const base = { id: ++this.#nextId, client, round, kind, key, via };
      const signal = AbortSignal.timeout(this.#options.opTimeoutMs);
      const call = this.#options.now();
      let op: RecordedOperation;
      try {
        if (kind === 'get') {
          const reader = direct ? (this.#direct.get(via) as TRPCClient<NemesisAppRouter>) : cluster;
          const output = await reader.get.query({ key }, { signal });
          seen.set(key, output);
          op = { ...base, call, return: this.#options.now(), outcome: 'ok', output };
        } else {
          const value = kind === 'append' ? `[${writeId}]` : writeId;
          const expected = kind === 'cas' ? (seen.get(key) ?? '') : undefined;
          const input = {
            key,
            writeId,
            round,
            value,
            ...(expected === undefined ? {} : { expected }),
          };
          const result = await cluster.execute.mutate(
            { name: kind, input } as Parameters<typeof cluster.execute.mutate>[0],
            { signal },
          );
          const swapped = 'swapped' in result ? result.swapped : undefined;
          if (kind !== 'cas' || swapped === true)
            seen.set(key, kind === 'append' ? (seen.get(key) ?? '') + value : value);
          op = {
            ...base,
            value,
            ...(expected === undefined ? {} : { expected }),
            writeId,
            call,
            return: this.#options.now(),
            outcome: 'ok',
            index: result.index,
            ...(kind === 'cas' ? { output: swapped === true } : {}),
          };
        }
      } catch (error) {
        const outcome: Outcome = kind === 'get' ? 'failed' : 'unknown';
        const written =
          kind === 'get'
            ? {}
            : {
                value: kind === 'append' ? `[${writeId}]` : writeId,
                ...(kind === 'cas' ? { expected: seen.get(key) ?? '' } : {}),
                writeId,
              };
        op = {
          ...base,
          ...written,
          call,
          return: outcome === 'unknown' ? null : this.#options.now(),
          outcome,
          error: describeError(error),
        };
      }
      this.#options.record(op);
      if (op.outcome !== 'ok') await sleep(randomInt(random, 20, 100));
    }
  }

  #sessionClient(client: number, initial: string): TRPCClient<NemesisAppRouter> {
    return createTRPCClient<NemesisAppRouter>({
      links: [
        raftSessionLink({
          clientId: `${this.#options.runId}-c${client}`,
          retryForMs: this.#options.opTimeoutMs,
        }),
        raftFailoverLink({ nodes: this.#options.nodes, initial, link: (url) => httpLink({ url }) }),
      ],
    });
  }
}

function pickKind(random: RandomSource): OperationKind {
  let roll = random.next() * 100;
  for (const [kind, share] of MIX) {
    roll -= share;
    if (roll < 0) return kind;
  }
  return 'get';
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const raft = (error as { data?: { raft?: { kind?: string } } }).data?.raft?.kind;
  return raft === undefined ? error.message : `${raft}: ${error.message}`;
}
