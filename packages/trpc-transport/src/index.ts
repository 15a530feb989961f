/**
 * @packageDocumentation
 * Raft over tRPC, everything in one entry point (Node.js): the peer transport
 * (`@tsraft/trpc-transport/peer`), the plugin for your tRPC app's server
 * (`@tsraft/trpc-transport/server`) and the client links (`@tsraft/trpc-transport/client`, the
 * one a browser bundle imports).
 */
export * from './client.ts';
export * from './peer.ts';
export * from './server.ts';
