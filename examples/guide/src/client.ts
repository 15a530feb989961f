import { createTRPCClient, httpLink } from '@trpc/client';
import { raftFailoverLink, raftSessionLink } from '@tsraft/trpc-transport/client';
import type { AppRouter } from './app-router.ts';

/** A client of the whole cluster: `nodes` maps each node's id to its app URL (`.../trpc`). */
export function createBankClient(nodes: Record<string, string>) {
  return createTRPCClient<AppRouter>({
    links: [
      // Stamps each mutation ({ clientId, seq }) and retries it with the same stamp: exactly once.
      raftSessionLink(),
      // Sends to one node at a time; follows the leader, moves on when a node does not answer.
      raftFailoverLink({ nodes, link: (url) => httpLink({ url }) }),
    ],
  });
}
