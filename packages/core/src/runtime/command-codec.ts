import type { LogEntry } from '../log-entry.ts';
import type { AppliedEntry, ClientSession, CommandResult } from '../state-machine.ts';

/**
 * What a `command` log entry carries: the application's command, the client session that makes
 * it exactly-once (thesis 6.3), and the time the leader stamped on it. State machines must use
 * `timestamp` instead of a clock, so that every replica sees the same time.
 */
export interface CommandEnvelope<Command> {
  readonly command: Command;
  readonly session?: ClientSession;
  /** Milliseconds since the epoch, stamped by the leader that appended the entry. */
  readonly timestamp: number;
}

/**
 * Turns command envelopes and command results into bytes and back. The bytes of an envelope are
 * what the log stores and replicates, so `decode` must accept whatever `encode` produced on any
 * node of the cluster, across versions. `encode` must not keep or mutate the envelope; the
 * returned arrays are owned by the caller.
 */
export interface CommandCodec<Command, Result> {
  encode(envelope: CommandEnvelope<Command>): Uint8Array;
  decode(bytes: Uint8Array): CommandEnvelope<Command>;
  /** Encodes a result for a follower that forwarded the proposal. */
  encodeResult(result: CommandResult<Result>): Uint8Array;
  decodeResult(bytes: Uint8Array): CommandResult<Result>;
}

/**
 * The default codec: UTF-8 JSON. Commands and results must survive `JSON.stringify` (no
 * `undefined` members that matter, no `bigint`, no `Date` expected back as a `Date`).
 */
export function jsonCodec<Command, Result>(): CommandCodec<Command, Result> {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return {
    encode: (envelope) => encoder.encode(JSON.stringify(envelope)),
    decode: (bytes) => {
      const value = JSON.parse(decoder.decode(bytes)) as CommandEnvelope<Command> | null;
      if (value === null || typeof value !== 'object' || typeof value.timestamp !== 'number') {
        throw new TypeError('not a JSON command envelope');
      }
      return value;
    },
    encodeResult: (result) => encoder.encode(JSON.stringify(result)),
    decodeResult: (bytes) => {
      const value = JSON.parse(decoder.decode(bytes)) as CommandResult<Result> | null;
      if (value === null || (value.status !== 'ok' && value.status !== 'error')) {
        throw new TypeError('not a JSON command result');
      }
      return value;
    },
  };
}

/** A committed log entry as a state machine sees it: a decoded command, or an internal entry. */
export function toAppliedEntry<Command, Result>(
  codec: CommandCodec<Command, Result>,
  entry: LogEntry,
): AppliedEntry<Command> {
  if (entry.type !== 'command') return { kind: 'internal', index: entry.index, term: entry.term };
  const envelope = codec.decode(entry.data);
  return {
    kind: 'command',
    index: entry.index,
    term: entry.term,
    timestamp: envelope.timestamp,
    command: envelope.command,
    ...(envelope.session === undefined ? {} : { session: envelope.session }),
  };
}
