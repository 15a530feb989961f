import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { getContainerRuntimeClient } from 'testcontainers';

/** What `probeDockerEngine()` found. `detail` or `reason` is one short sentence for a log line. */
export type DockerEngineProbe =
  | { readonly available: true; readonly detail: string }
  | { readonly available: false; readonly reason: string };

/** Options of `probeDockerEngine()`. */
export interface ProbeDockerEngineOptions {
  /** How long to wait for the engine to answer. Default: 5,000 ms. */
  timeoutMs?: number;
  /** Aborts the probe, which then reports the engine as unavailable. Default: none. */
  signal?: AbortSignal;
}

/** The places testcontainers looks for an engine when `DOCKER_HOST` is not set. */
const socketPaths = (): string[] => [
  '/var/run/docker.sock',
  ...(process.env.XDG_RUNTIME_DIR ? [join(process.env.XDG_RUNTIME_DIR, 'docker.sock')] : []),
  join(homedir(), '.docker', 'run', 'docker.sock'),
  join(homedir(), '.docker', 'desktop', 'docker.sock'),
];

/**
 * Tells whether a Docker engine answers, quickly and without hanging: when neither `DOCKER_HOST`,
 * `~/.testcontainers.properties` nor a known socket exists it answers at once; otherwise it asks
 * through testcontainers' own runtime client (the one the testcontainers provider uses), giving up
 * after `timeoutMs`. Never throws.
 */
export async function probeDockerEngine(
  options: ProbeDockerEngineOptions = {},
): Promise<DockerEngineProbe> {
  const { timeoutMs = 5_000, signal } = options;
  const configured =
    process.env.DOCKER_HOST !== undefined ||
    process.env.TESTCONTAINERS_HOST_OVERRIDE !== undefined ||
    existsSync(join(homedir(), '.testcontainers.properties'));
  if (!configured && !socketPaths().some((path) => existsSync(path))) {
    return {
      available: false,
      reason: 'no Docker engine answered (DOCKER_HOST unset, no docker.sock)',
    };
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  try {
    const client = await Promise.race([getContainerRuntimeClient(), deadline]);
    const { serverVersion, operatingSystem } = client.info.containerRuntime;
    return {
      available: true,
      detail: `Docker engine ${serverVersion} (${operatingSystem}) answered`,
    };
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return { available: false, reason: `no Docker engine answered (${why})` };
  } finally {
    clearTimeout(timer);
  }
}
