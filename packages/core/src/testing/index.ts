/**
 * The test kit of tsraft: in-memory implementations of the core's interfaces for simulations and
 * tests, the storage conformance suites every store runs, and the client session rules every
 * state machine with sessions answers.
 */

export {
  type ClientSessionFixture,
  describeClientSessionConformance,
  type SessionAnswer,
  type SessionCommand,
} from './client-session-conformance.ts';
export { FaultInjector } from './fault-injector.ts';
export {
  InProcessNetwork,
  type InProcessNetworkOptions,
  InProcessTransport,
  UnreachableError,
} from './in-process-transport.ts';
export {
  type KvCommand,
  type KvResult,
  KvStateMachine,
  type KvStateMachineOptions,
} from './kv-state-machine.ts';
export * from './linearizability/index.ts';
export { pickLoopbackPort } from './loopback-port.ts';
export {
  type MemoryLogDurableState,
  MemoryLogStore,
  type MemoryLogStoreOptions,
} from './memory-log-store.ts';
export {
  type MemorySnapshotDurableState,
  MemorySnapshotStore,
  type MemorySnapshotStoreOptions,
} from './memory-snapshot-store.ts';
export { InvariantChecker, InvariantViolation } from './sim/invariant-checker.ts';
export { CALM_NETWORK, type NetworkFaults, SimNetwork } from './sim/sim-network.ts';
export {
  LOSSY_NETWORK,
  runSimulation,
  SimulationFailure,
  type SimulationOptions,
  type SimulationReport,
  SMALL_BATCHES,
} from './sim/simulator.ts';
export {
  describeLogStoreConformance,
  describeSnapshotStoreConformance,
  type LogStoreConformanceOptions,
  type LogStoreFixture,
  type SnapshotStoreConformanceOptions,
  type SnapshotStoreFixture,
} from './storage-conformance.ts';
