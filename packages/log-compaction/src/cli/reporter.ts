import { SingleBar } from 'cli-progress';
import type { CliError } from './cli-error.ts';

/** Where a command's output goes: stdout for results, stderr for progress and failures. */
export interface CliStreams {
  /** Where a file named `-` is read from. */
  readonly stdin: AsyncIterable<Uint8Array>;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Progress of one long step, in bytes. */
export interface Progress {
  update(bytes: number): void;
  /** The step ended (successfully or not): the bar or the last line is finished. */
  stop(): void;
}

/** Options every command takes. */
export interface OutputOptions {
  /** One JSON document on stdout, nothing else (no progress). */
  readonly json?: boolean;
  /** No progress. */
  readonly quiet?: boolean;
}

/** Plain progress lines at most this often. */
const LINE_INTERVAL_MS = 2000;

/**
 * How a command reports: its result as text or as one JSON document, progress as a bar on a
 * terminal or as plain lines otherwise (never with `--json` or `--quiet`), failures as what went
 * wrong and what to do.
 */
export class Reporter {
  readonly #streams: CliStreams;
  readonly #json: boolean;
  readonly #quiet: boolean;

  constructor(streams: CliStreams, options: OutputOptions) {
    this.#streams = streams;
    this.#json = options.json === true;
    this.#quiet = options.quiet === true || this.#json;
  }

  /** The command's result: `text` for people, `data` with `--json`. */
  result(text: string, data: unknown): void {
    this.#streams.stdout.write(this.#json ? `${JSON.stringify(data, null, 2)}\n` : `${text}\n`);
  }

  /** A note for people (stderr), not with `--json` or `--quiet`. */
  note(text: string): void {
    if (!this.#quiet) this.#streams.stderr.write(`${text}\n`);
  }

  failure(error: CliError): void {
    if (this.#json) {
      this.#streams.stdout.write(
        `${JSON.stringify({ error: { code: error.exitCode, message: error.message, hint: error.hint } }, null, 2)}\n`,
      );
    }
    this.#streams.stderr.write(`tsraft-snapshot: ${error.message}\n  what to do: ${error.hint}\n`);
  }

  /** Progress of `label` over `total` bytes (unknown: `undefined`). */
  progress(label: string, total: number | undefined): Progress {
    if (this.#quiet) return { update: () => {}, stop: () => {} };
    const started = performance.now();
    const rate = (bytes: number): string => {
      const seconds = (performance.now() - started) / 1000;
      return seconds > 0 ? `${(bytes / 1e6 / seconds).toFixed(1)} MB/s` : '';
    };
    if (this.#streams.stderr.isTTY === true && total !== undefined && total > 0) {
      const bar = new SingleBar({
        stream: this.#streams.stderr,
        format: `${label} [{bar}] {percentage}% | {done} of {size} | {rate}`,
        hideCursor: true,
        clearOnComplete: false,
      });
      bar.start(total, 0, { done: formatBytes(0), size: formatBytes(total), rate: '' });
      return {
        update: (bytes) => bar.update(bytes, { done: formatBytes(bytes), rate: rate(bytes) }),
        stop: () => bar.stop(),
      };
    }
    let last = started;
    let current = 0;
    const line = (): void => {
      const of =
        total === undefined
          ? ''
          : ` of ${formatBytes(total)} (${total === 0 ? 100 : Math.floor((current / total) * 100)}%)`;
      this.#streams.stderr.write(`${label}: ${formatBytes(current)}${of}, ${rate(current)}\n`);
    };
    return {
      update: (bytes) => {
        current = bytes;
        const now = performance.now();
        if (now - last >= LINE_INTERVAL_MS) {
          last = now;
          line();
        }
      },
      stop: () => line(),
    };
  }
}

/** `1.5 MiB`, `12 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
