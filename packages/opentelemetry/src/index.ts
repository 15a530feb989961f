/**
 * @packageDocumentation
 * Metrics of tsraft nodes through the OpenTelemetry API only (`@opentelemetry/api`, a peer
 * dependency; no SDK): {@link instrumentRaftNode} reports a node's or a supervisor's term, role,
 * indexes, replication lag, proposals, reads, elections, snapshots and storage latencies to the
 * meter provider your app registered.
 */
export {
  INSTRUMENTATION_NAME,
  type InstrumentedSource,
  type InstrumentRaftNodeOptions,
  instrumentRaftNode,
  type RaftNodeInstrumentation,
} from './instrument-raft-node.ts';
