import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CliError, EXIT } from './cli-error.ts';
import type { CliStreams } from './reporter.ts';

/** Bytes the tool reads from a file at a time. */
const READ_BYTES = 1024 * 1024;

/** A file the tool reads: its bytes as a stream, and its size when known. */
export interface InputFile {
  readonly chunks: AsyncIterable<Uint8Array>;
  readonly size: number | undefined;
}

/**
 * Opens `path` for reading (`-`: standard input).
 *
 * @throws CliError `notFound` when there is no such file.
 */
export async function openInput(
  path: string,
  context: { signal: AbortSignal; streams: CliStreams },
): Promise<InputFile> {
  const { signal } = context;
  if (path === '-') return { chunks: context.streams.stdin, size: undefined };
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new Error(`${path} is not a file`);
    size = info.size;
  } catch (error) {
    throw new CliError(
      EXIT.notFound,
      `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`,
      'check the path of the snapshot file',
      { cause: error },
    );
  }
  return { chunks: createReadStream(path, { highWaterMark: READ_BYTES, signal }), size };
}

/**
 * Writes `chunks` to `path` (`-`: standard output). A file is written beside its target under a
 * temporary name, flushed to disk, and renamed only once complete: a failure or an interruption
 * leaves no file (and an existing file at `path` untouched).
 */
export async function writeOutput(
  path: string,
  chunks: AsyncIterable<Uint8Array>,
  context: { signal: AbortSignal; streams: CliStreams },
): Promise<void> {
  const { signal } = context;
  if (path === '-') {
    const { stdout } = context.streams;
    for await (const chunk of chunks) {
      signal.throwIfAborted();
      if (!stdout.write(chunk)) await new Promise<void>((resolve) => stdout.once('drain', resolve));
    }
    return;
  }
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.partial`);
  let file: Awaited<ReturnType<typeof open>> | undefined;
  try {
    file = await open(temporary, 'wx');
  } catch (error) {
    throw new CliError(
      EXIT.notFound,
      `cannot write ${path}: ${error instanceof Error ? error.message : String(error)}`,
      'check that the folder exists and is writable',
      { cause: error },
    );
  }
  try {
    for await (const chunk of chunks) {
      signal.throwIfAborted();
      await file.write(chunk);
    }
    await file.sync();
    await file.close();
    file = undefined;
    await rename(temporary, path);
  } catch (error) {
    await file?.close().catch(() => {});
    await rm(temporary, { force: true });
    throw error;
  }
}
