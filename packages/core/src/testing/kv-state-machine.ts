import {
  ClientSessions,
  type ClientSessionsJson,
  type ClientSessionsOptions,
  sessionConflictResult,
} from '../client-sessions.ts';
import { commandDigest } from '../command-digest.ts';
import type { LogPosition } from '../log-entry.ts';
import type { AppliedEntry, CommandResult, StateMachine } from '../state-machine.ts';
import { chunked, concatBytes } from './byte-streams.ts';
import { delay } from './delay.ts';

/** A command of the {@link KvStateMachine}. An absent key is distinct from the empty string. */
export type KvCommand =
  | { readonly op: 'get'; readonly key: string }
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  /** Appends `value` to the key's value (an absent key counts as `''`). */
  | { readonly op: 'append'; readonly key: string; readonly value: string }
  /** Sets `value` if the key's value is `expected` (`null`: the key is absent). */
  | {
      readonly op: 'cas';
      readonly key: string;
      readonly expected: string | null;
      readonly value: string;
    };

/** The result of a {@link KvCommand}; `value` is the key's value after the command. */
export type KvResult =
  | { readonly op: 'get'; readonly value: string | null }
  | { readonly op: 'put'; readonly value: string }
  | { readonly op: 'append'; readonly value: string }
  | { readonly op: 'cas'; readonly ok: boolean; readonly value: string | null };

/** Options of {@link KvStateMachine}. */
export interface KvStateMachineOptions {
  /** Delay, on real timers, before each `apply` batch takes effect (a slow state machine). Default 0. */
  readonly applyDelayMs?: number;
  /** Size of the chunks `exportSnapshot` streams. Default 64 KiB. */
  readonly chunkBytes?: number;
  /** Options of the client sessions (exactly-once commands). */
  readonly sessions?: ClientSessionsOptions;
}

/** The snapshot format: JSON text of this, UTF-8. */
interface KvSnapshot {
  readonly format: 'tsraft-kv/1';
  readonly data: readonly (readonly [string, string])[];
  readonly sessions: ClientSessionsJson<CommandResult<KvResult>>;
}

const DEFAULT_CHUNK_BYTES = 64 * 1024;

/**
 * An in-memory key/value {@link StateMachine} for tests and simulations. Commands that carry a
 * client session execute exactly once (thesis 6.3): a duplicate answers the recorded result, and
 * a command of an expired session answers an error named `SessionExpiredError`, and a command
 * whose stamp another command used answers `SessionConflictError` (code `CONFLICT`).
 *
 * Memory is its durable state: a simulated crash that keeps the store keeps this object too, or
 * replaces it with a new one restored from a snapshot.
 */
export class KvStateMachine implements StateMachine<KvCommand, KvResult> {
  readonly #applyDelayMs: number;
  readonly #chunkBytes: number;
  readonly #sessionOptions: ClientSessionsOptions | undefined;
  #data = new Map<string, string>();
  #sessions: ClientSessions<CommandResult<KvResult>>;
  #lastApplied: LogPosition = { index: 0, term: 0 };

  constructor(options: KvStateMachineOptions = {}) {
    this.#applyDelayMs = options.applyDelayMs ?? 0;
    this.#chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.#sessionOptions = options.sessions;
    this.#sessions = new ClientSessions(options.sessions);
  }

  /** The value of `key` now, or `null` if absent: a local read, for test assertions. */
  get(key: string): string | null {
    return this.#data.get(key) ?? null;
  }

  /**
   * The last entry applied, or the snapshot restored since (as `lastApplied()`, without waiting):
   * a local read, for test assertions.
   */
  get appliedPosition(): LogPosition {
    return this.#lastApplied;
  }

  /** Runs `fn` on the current contents, without copying them; `fn` must not keep the map. */
  read<T>(fn: (data: ReadonlyMap<string, string>) => T): T {
    return fn(this.#data);
  }

  async lastApplied(options?: { signal?: AbortSignal }): Promise<LogPosition> {
    options?.signal?.throwIfAborted();
    return this.#lastApplied;
  }

  /**
   * Applies `entries`, which must follow `lastApplied()` contiguously (else it throws and applies
   * nothing). The whole batch takes effect at once, after `applyDelayMs`.
   */
  async apply(
    entries: readonly AppliedEntry<KvCommand>[],
    options?: { signal?: AbortSignal },
  ): Promise<(CommandResult<KvResult> | undefined)[]> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    if (this.#applyDelayMs > 0) await delay(this.#applyDelayMs, signal);
    let expected = this.#lastApplied.index + 1;
    for (const entry of entries) {
      if (entry.index !== expected) {
        throw new Error(
          `apply: entry ${entry.index} does not follow the last applied entry ${expected - 1}`,
        );
      }
      expected++;
    }
    const results = entries.map((entry) =>
      entry.kind === 'command' ? this.#execute(entry) : undefined,
    );
    const last = entries.at(-1);
    if (last !== undefined) this.#lastApplied = { index: last.index, term: last.term };
    return results;
  }

  async exportSnapshot(options?: {
    signal?: AbortSignal;
  }): Promise<{ position: LogPosition; chunks: AsyncIterable<Uint8Array> }> {
    options?.signal?.throwIfAborted();
    // Encoded now, so that entries applied while the chunks are read do not show.
    const snapshot: KvSnapshot = {
      format: 'tsraft-kv/1',
      data: [...this.#data],
      sessions: this.#sessions.toJSON(),
    };
    const bytes = new TextEncoder().encode(JSON.stringify(snapshot));
    return { position: this.#lastApplied, chunks: chunked(bytes, this.#chunkBytes) };
  }

  async restoreSnapshot(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal },
  ): Promise<void> {
    const signal = options?.signal;
    const parts: Uint8Array[] = [];
    for await (const part of chunks) {
      signal?.throwIfAborted();
      parts.push(part);
    }
    signal?.throwIfAborted();
    const text = new TextDecoder('utf-8', { fatal: true }).decode(concatBytes(parts));
    const snapshot = JSON.parse(text) as KvSnapshot;
    if (snapshot?.format !== 'tsraft-kv/1' || !Array.isArray(snapshot.data)) {
      throw new TypeError('restoreSnapshot: not a KvStateMachine snapshot');
    }
    const data = new Map<string, string>(snapshot.data);
    const sessions = ClientSessions.fromJSON(snapshot.sessions, this.#sessionOptions);
    this.#data = data;
    this.#sessions = sessions;
    this.#lastApplied = { index: position.index, term: position.term };
  }

  #execute(entry: AppliedEntry<KvCommand> & { kind: 'command' }): CommandResult<KvResult> {
    const { session, timestamp } = entry;
    if (session === undefined) return this.#run(entry.command);
    this.#sessions.expire(timestamp);
    const key = { ...session, digest: commandDigest(entry.command) };
    const check = this.#sessions.check(key, timestamp);
    switch (check.kind) {
      case 'duplicate':
        return check.result;
      case 'conflict':
        return sessionConflictResult(session);
      case 'expired':
        return {
          status: 'error',
          error: {
            name: 'SessionExpiredError',
            message: `command ${session.seq} of client ${session.clientId} belongs to an expired session or is too old to answer; start a new session`,
          },
        };
      case 'new': {
        const result = this.#run(entry.command);
        this.#sessions.record(key, result, timestamp);
        return result;
      }
      default:
        return check satisfies never;
    }
  }

  #run(command: KvCommand): CommandResult<KvResult> {
    const data = this.#data;
    switch (command.op) {
      case 'get':
        return ok({ op: 'get', value: data.get(command.key) ?? null });
      case 'put':
        data.set(command.key, command.value);
        return ok({ op: 'put', value: command.value });
      case 'append': {
        const value = (data.get(command.key) ?? '') + command.value;
        data.set(command.key, value);
        return ok({ op: 'append', value });
      }
      case 'cas': {
        const current = data.get(command.key) ?? null;
        if (current !== command.expected) return ok({ op: 'cas', ok: false, value: current });
        data.set(command.key, command.value);
        return ok({ op: 'cas', ok: true, value: command.value });
      }
      default:
        // A malformed command from the log: the same answer on every replica, not a crash.
        return {
          status: 'error',
          error: {
            name: 'UnknownCommandError',
            message: `unknown key/value operation ${JSON.stringify((command as { op: unknown }).op)}`,
          },
        };
    }
  }
}

function ok(value: KvResult): CommandResult<KvResult> {
  return { status: 'ok', value };
}
