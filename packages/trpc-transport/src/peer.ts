/**
 * @packageDocumentation
 * `@tsraft/trpc-transport/peer`: the peer transport, which carries a `RaftNode`'s requests
 * between the nodes of a cluster over HTTP(S), signed with the cluster secret. Node.js only.
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
export {
  createTrpcTransport,
  DEFAULT_MAX_RESPONSE_BYTES,
  TrpcTransport,
  type TrpcTransportOptions,
} from './trpc-transport.ts';
