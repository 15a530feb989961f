import { EmbeddedProvider } from './embedded-provider.ts';
import { ExternalProvider } from './external-provider.ts';
import { type PostgresProvider, PROVIDER_NAMES, type ProviderName } from './postgres-server.ts';
import { TestcontainersProvider } from './testcontainers-provider.ts';

/** Options of `selectProvider()`. */
export interface SelectProviderOptions {
  /** Receives the one line that says which provider was chosen and why. Default: `console.info`. */
  log?: (line: string) => void;
  /** Aborts the Docker probe (then the embedded provider is chosen). Default: none. */
  signal?: AbortSignal;
}

/**
 * Chooses how the integration tests get Postgres servers.
 *
 * - `TSRAFT_PG_PROVIDER=testcontainers|embedded|external` forces a provider; any other non-empty
 *   value throws.
 * - Otherwise: `testcontainers` when a Docker engine answers (a quick probe, at most 5 s) and
 *   has the image or can pull it, else `embedded`, which needs nothing but npm.
 *
 * Logs one line with the choice and the reason, e.g.
 * `[postgres] no Docker engine answered (...); using the embedded provider`.
 */
export async function selectProvider(
  options: SelectProviderOptions = {},
): Promise<PostgresProvider> {
  const { log = console.info, signal } = options;
  const forced = forcedProviderName();
  if (forced !== undefined) {
    const provider = createProvider(forced);
    log(`[postgres] using the ${describe(provider)} (TSRAFT_PG_PROVIDER=${forced})`);
    return provider;
  }
  const containers = new TestcontainersProvider();
  const probe = await containers.availability(signal ? { signal } : {});
  if (!probe.available) {
    log(`[postgres] ${probe.reason}; using the embedded provider`);
    return createProvider('embedded');
  }
  log(`[postgres] ${probe.detail}; using the ${describe(containers)}`);
  return containers;
}

/** The provider `TSRAFT_PG_PROVIDER` names, or `undefined` when it is unset or empty. */
export function forcedProviderName(): ProviderName | undefined {
  const value = process.env.TSRAFT_PG_PROVIDER?.trim();
  if (!value) {
    return undefined;
  }
  if (!isProviderName(value)) {
    throw new Error(
      `TSRAFT_PG_PROVIDER="${value}" is not a Postgres provider; use one of ${PROVIDER_NAMES.join(', ')}, ` +
        'or leave it unset to use testcontainers when Docker answers and embedded otherwise.',
    );
  }
  return value;
}

function isProviderName(value: string): value is ProviderName {
  return (PROVIDER_NAMES as readonly string[]).includes(value);
}

function createProvider(name: ProviderName): PostgresProvider {
  switch (name) {
    case 'testcontainers':
      return new TestcontainersProvider();
    case 'embedded':
      return new EmbeddedProvider();
    case 'external':
      return new ExternalProvider();
    default:
      return name satisfies never;
  }
}

function describe(provider: PostgresProvider): string {
  return provider instanceof TestcontainersProvider
    ? `testcontainers provider (image ${provider.image})`
    : `${provider.name} provider`;
}
