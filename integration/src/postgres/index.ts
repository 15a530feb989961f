/**
 * Postgres servers for the integration tests: one interface, three ways to get a server.
 * Start with `selectProvider()`; see `PostgresServer` for what a server promises.
 */
export {
  type DockerEngineProbe,
  type ProbeDockerEngineOptions,
  probeDockerEngine,
} from './docker-engine.ts';
export { EmbeddedProvider, type EmbeddedProviderOptions } from './embedded-provider.ts';
export { ExternalProvider, type ExternalProviderOptions } from './external-provider.ts';
export {
  type PostgresProvider,
  type PostgresServer,
  PROVIDER_NAMES,
  type ProviderName,
  type StartOptions,
} from './postgres-server.ts';
export {
  forcedProviderName,
  type SelectProviderOptions,
  selectProvider,
} from './select-provider.ts';
export {
  DEFAULT_POSTGRES_IMAGE,
  TestcontainersProvider,
  type TestcontainersProviderOptions,
} from './testcontainers-provider.ts';
