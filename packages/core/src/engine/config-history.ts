import { type ClusterConfig, decodeConfig } from '../configuration.ts';
import { InvariantViolationError } from '../errors.ts';
import type { LogEntry } from '../log-entry.ts';

/** A configuration and the index of the log entry that carries it (the snapshot's index for the base). */
export interface IndexedConfig {
  readonly index: number;
  readonly config: ClusterConfig;
}

/**
 * The configurations a server's log holds (Raft paper 6): the one as of the snapshot the log
 * starts after, and one per `config` entry after it. A server uses the latest one in its log,
 * committed or not; when the entry carrying it is truncated, the one before it applies again.
 */
export class ConfigHistory {
  #base: IndexedConfig;
  /** Configuration entries after the base, in log order. */
  #entries: IndexedConfig[] = [];

  constructor(base: IndexedConfig, entries: readonly LogEntry[]) {
    this.#base = base;
    this.appended(entries);
  }

  /** The configuration in effect: the latest in the log. */
  get current(): IndexedConfig {
    return this.#entries.at(-1) ?? this.#base;
  }

  /** The configuration as of `index` (the latest at or before it); `index` must not precede the base. */
  at(index: number): IndexedConfig {
    if (index < this.#base.index) {
      throw new InvariantViolationError(
        `the configuration as of ${index} is unknown: the log starts after ${this.#base.index}`,
      );
    }
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const entry = this.#entries[i]!;
      if (entry.index <= index) return entry;
    }
    return this.#base;
  }

  /** Records the configuration entries among `entries`, appended to the log in order. */
  appended(entries: readonly LogEntry[]): void {
    for (const entry of entries) {
      if (entry.type !== 'config') continue;
      let config: ClusterConfig;
      try {
        config = decodeConfig(entry.data);
      } catch (error) {
        throw new InvariantViolationError(
          `the configuration entry at ${entry.index} is malformed: ${(error as Error).message}`,
        );
      }
      this.#entries.push({ index: entry.index, config });
    }
  }

  /** The log lost every entry from `index` on: their configurations no longer apply. */
  truncatedFrom(index: number): void {
    while ((this.#entries.at(-1)?.index ?? 0) >= index) this.#entries.pop();
  }

  /** The log now starts after `index` (compaction): the configuration as of there is the base. */
  compactedTo(index: number): void {
    const base = this.at(index);
    this.#base = { index, config: base.config };
    this.#entries = this.#entries.filter((entry) => entry.index > index);
  }

  /** The log was replaced by a snapshot at `index` carrying `config`. */
  restored(index: number, config: ClusterConfig): void {
    this.#base = { index, config };
    this.#entries = [];
  }
}
