/**
 * The test kit of tsraft: in-memory implementations of the core's interfaces for simulations and
 * tests, the simulator and the linearizability checker. It runs anywhere (no test runner needed);
 * the storage conformance suites, which need Vitest, are in `@tsraft/core/testing/conformance`.
 */

export {
  chunked,
  collectChunks,
  concatBytes,
  readBytes,
  streamOf,
} from './byte-streams.ts';
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
export { CALM_DISK, type DiskFaults } from './sim/sim-process.ts';
export {
  FAULTY_DISK,
  LOSSY_NETWORK,
  runSimulation,
  SimulationFailure,
  type SimulationOptions,
  type SimulationReport,
  SMALL_BATCHES,
} from './sim/simulator.ts';
