/**
 * @packageDocumentation
 * Raft over tRPC: the peer transport that carries Raft's requests between nodes over HTTP(S),
 * authenticated with the cluster secret. (The tRPC plugin for replicated mutations comes later.)
 */
export type { PeerFetch } from './peer-client.ts';
export {
  createTrpcPeerServer,
  DEFAULT_BASE_PATH,
  DEFAULT_MAX_BODY_BYTES,
  type ListenAddress,
  TrpcPeerServer,
  type TrpcPeerServerOptions,
} from './peer-server.ts';
export { createTrpcTransport, TrpcTransport, type TrpcTransportOptions } from './trpc-transport.ts';
