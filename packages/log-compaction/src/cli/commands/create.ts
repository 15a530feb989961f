import { createTRPCUntypedClient, httpLink, TRPCClientError } from '@trpc/client';
import type { StoredSnapshot } from '@tsraft/core';
import { CliError, EXIT } from '../cli-error.ts';
import type { CommandContext } from '../command-context.ts';
import { formatBytes } from '../reporter.ts';

/** Options of `create`. */
export interface CreateOptions {
  /** The node's tRPC endpoint, e.g. `http://node-1:3000/trpc`. */
  readonly admin: string;
  /** Where the app mounted the admin router. Default `raftAdmin`. */
  readonly adminPath: string;
  /** `name: value` headers sent with the call (the admin credential). */
  readonly header: readonly string[];
}

/** `create`: a running node takes a snapshot now, through its admin router. */
export async function createCommand(
  options: CreateOptions,
  context: CommandContext,
): Promise<void> {
  const headers = parseHeaders(options.header);
  const client = createTRPCUntypedClient({
    links: [httpLink({ url: options.admin, headers })],
  });
  const path = `${options.adminPath}.takeSnapshot`;
  let taken: StoredSnapshot | null;
  try {
    context.reporter.note(`asking ${options.admin} (${path}) to take a snapshot`);
    taken = (await client.mutation(path, undefined, {
      signal: context.signal,
    })) as StoredSnapshot | null;
  } catch (error) {
    throw adminError(error, options, context.signal);
  }
  if (taken === null) {
    context.reporter.result('nothing was applied since the latest snapshot: none taken', {
      snapshot: null,
    });
    return;
  }
  context.reporter.result(
    `took snapshot ${taken.index}/${taken.term}: ${formatBytes(taken.size)}, SHA-256 ${taken.sha256}`,
    { snapshot: taken },
  );
}

function parseHeaders(headers: readonly string[]): Record<string, string> {
  const parsed: Record<string, string> = {};
  for (const header of headers) {
    const colon = header.indexOf(':');
    if (colon <= 0) {
      throw new CliError(
        EXIT.usage,
        `--header ${JSON.stringify(header)} is not "name: value"`,
        'write each header as --header "x-admin: <secret>"',
      );
    }
    parsed[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
  }
  return parsed;
}

function adminError(error: unknown, options: CreateOptions, signal: AbortSignal): unknown {
  if (signal.aborted || !(error instanceof TRPCClientError)) return error;
  const data = error.data as { code?: string; httpStatus?: number } | undefined;
  switch (data?.code) {
    case 'UNAUTHORIZED':
    case 'FORBIDDEN':
      return new CliError(
        EXIT.refused,
        `${options.admin} refused the call: ${error.message}`,
        'pass the admin credential the app expects, e.g. --header "x-admin: <secret>"',
        { cause: error },
      );
    case 'NOT_FOUND':
      return new CliError(
        EXIT.notFound,
        `${options.admin} has no procedure ${options.adminPath}.takeSnapshot`,
        'pass --admin-path with the key your app mounted raft.adminRouter() under',
        { cause: error },
      );
    case 'PRECONDITION_FAILED':
      return new CliError(
        EXIT.refused,
        error.message,
        'start the node with a snapshotStore (PostgresSnapshotStore) to take snapshots',
        { cause: error },
      );
    case undefined:
      return new CliError(
        EXIT.unavailable,
        `cannot reach ${options.admin}: ${error.message}`,
        'check that the node runs and that --admin is its tRPC URL (e.g. http://host:port/trpc)',
        { cause: error },
      );
    default:
      return new CliError(
        EXIT.unavailable,
        `the node could not take a snapshot: ${error.message}`,
        "check the node's log, then try again (a stopped node must be restarted first)",
        { cause: error },
      );
  }
}
