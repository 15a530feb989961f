/**
 * The response header through which a node of the app tells a client which node leads (its id),
 * as `createRaftProcedures(...).responseMeta` sets it and `raftFailoverLink` reads it.
 */
export const RAFT_LEADER_HEADER = 'x-tsraft-leader';

/**
 * The leader a successful answer names in {@link RAFT_LEADER_HEADER}, read structurally from the
 * `context` tRPC's HTTP links put on each result (`{ response: Response }`); `undefined` when it
 * names none.
 */
export function leaderFromContext(context: unknown): string | undefined {
  const response = (context as { response?: unknown } | null | undefined)?.response;
  const headers = (response as { headers?: unknown } | null | undefined)?.headers;
  const get = (headers as { get?: unknown } | null | undefined)?.get;
  if (typeof get !== 'function') return undefined;
  const leader: unknown = get.call(headers, RAFT_LEADER_HEADER);
  return typeof leader === 'string' && leader !== '' ? leader : undefined;
}
