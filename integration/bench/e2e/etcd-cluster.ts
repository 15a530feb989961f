import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pickLoopbackPort } from '@tsraft/core/testing';

/** The `etcd` binary on the PATH (Debian's `etcd-server`), or `undefined`. */
export async function findEtcd(): Promise<string | undefined> {
  try {
    const { stdout } = await promisify(execFile)('sh', ['-c', 'command -v etcd']);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A 3-node etcd cluster on loopback, each member a process with its own data directory under
 * `root` (fsync on: etcd's default), removed on dispose.
 */
export class EtcdCluster implements AsyncDisposable {
  /** Client URLs of the members. */
  readonly clientUrls: readonly string[];
  /** Member processes. */
  readonly processes: readonly ChildProcess[];
  readonly #dir: string;

  private constructor(clientUrls: string[], processes: ChildProcess[], dir: string) {
    this.clientUrls = clientUrls;
    this.processes = processes;
    this.#dir = dir;
  }

  static async start(options: { binary: string; root: string }): Promise<EtcdCluster> {
    const dir = await mkdtemp(join(options.root, 'etcd-'));
    const names = ['e1', 'e2', 'e3'];
    const ports: [number, number][] = [];
    for (const _ of names) ports.push([await pickLoopbackPort(), await pickLoopbackPort()]);
    const peerUrl = (i: number): string => `http://127.0.0.1:${ports[i]?.[1]}`;
    const clientUrls = names.map((_, i) => `http://127.0.0.1:${ports[i]?.[0]}`);
    const initialCluster = names.map((name, i) => `${name}=${peerUrl(i)}`).join(',');
    const processes = names.map((name, i) =>
      spawn(
        options.binary,
        [
          `--name=${name}`,
          `--data-dir=${join(dir, name)}`,
          `--listen-client-urls=${clientUrls[i]}`,
          `--advertise-client-urls=${clientUrls[i]}`,
          `--listen-peer-urls=${peerUrl(i)}`,
          `--initial-advertise-peer-urls=${peerUrl(i)}`,
          `--initial-cluster=${initialCluster}`,
          '--initial-cluster-state=new',
          '--initial-cluster-token=tsraft-bench',
          '--logger=zap',
          '--log-level=error',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      ),
    );
    const cluster = new EtcdCluster(clientUrls, processes, dir);
    try {
      await cluster.#healthy();
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /** WAL fsyncs of all members so far (`etcd_disk_wal_fsync_duration_seconds_count`). */
  async walSyncs(): Promise<number> {
    let total = 0;
    for (const url of this.clientUrls) {
      const text = await (await fetch(`${url}/metrics`)).text();
      const match = /^etcd_disk_wal_fsync_duration_seconds_count (\d+)/m.exec(text);
      total += Number(match?.[1] ?? 0);
    }
    return total;
  }

  async #healthy(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const answers = await Promise.all(
        this.clientUrls.map((url) =>
          fetch(`${url}/health`)
            .then((response) => response.json() as Promise<{ health?: string }>)
            .then((body) => body.health === 'true')
            .catch(() => false),
        ),
      );
      if (answers.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error('the etcd cluster did not become healthy in 30 s');
      await sleep(200);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(
      this.processes.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    await rm(this.#dir, { recursive: true, force: true });
  }
}
