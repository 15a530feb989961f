/**
 * @packageDocumentation
 * Raft over tRPC: the peer transport and the tRPC plugin for replicated mutations. Its first code comes with the trpc-transport issue.
 */
export {};
