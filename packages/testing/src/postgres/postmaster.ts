import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Options of `Postmaster.start()`. */
export interface PostmasterStartOptions {
  /** The `postgres` binary. */
  binary: string;
  /** An initialised data directory (initdb), owned by the user the server runs as. */
  dataDir: string;
  /** TCP port to listen on, on 127.0.0.1 only. */
  port: number;
  /** User and group to run as; required when this process is root, since Postgres refuses root. */
  owner?: { uid: number; gid: number };
  /** How long to wait for "ready to accept connections". Default: 60,000 ms. */
  timeoutMs?: number;
  /** Aborts the start; the process is killed before the promise rejects. Default: none. */
  signal?: AbortSignal;
}

/** Thrown by `Postmaster.start()` when the port is taken, so the caller can try another. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  readonly port: number;

  constructor(port: number, log: string) {
    super(`Port ${port} on 127.0.0.1 is already in use; Postgres could not listen on it.\n${log}`);
    this.port = port;
  }
}

/** How many of the server's last log lines an error message quotes. */
const LOG_LINES_KEPT = 40;

/** Postmasters alive in this process; killed if the process exits without disposing them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) {
    child.kill('SIGKILL');
  }
});

/**
 * A Postgres server process (the postmaster) this process started, listening on 127.0.0.1.
 * Its children exit by themselves when it dies; `kill()` does not rely on that.
 */
export class Postmaster {
  readonly #child: ChildProcess;
  readonly #dataDir: string;
  readonly #exited: Promise<void>;
  readonly #log: string[];

  private constructor(child: ChildProcess, dataDir: string, exited: Promise<void>, log: string[]) {
    this.#child = child;
    this.#dataDir = dataDir;
    this.#exited = exited;
    this.#log = log;
  }

  /**
   * Starts `postgres` and resolves once it accepts connections (after crash recovery, if the last
   * run was killed). On failure or abort no process is left and the error quotes the server's log.
   */
  static async start(options: PostmasterStartOptions): Promise<Postmaster> {
    const { binary, dataDir, port, owner, timeoutMs = 60_000, signal } = options;
    signal?.throwIfAborted();
    const child = spawn(
      binary,
      // No Unix socket: its path would have to be writable and short; tests connect over TCP.
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
      ],
      {
        ...(owner ?? {}),
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, LC_MESSAGES: 'C' },
      },
    );
    running.add(child);
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        running.delete(child);
        resolve();
      });
    });
    const log: string[] = [];
    let ready: () => void;
    const readyLine = new Promise<void>((resolve) => {
      ready = resolve;
    });
    let pending = '';
    // Keep reading stderr for the server's whole life: a full pipe would block its logging.
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        log.push(line);
        if (log.length > LOG_LINES_KEPT) {
          log.shift();
        }
        if (line.includes('database system is ready to accept connections')) {
          ready();
        }
      }
    });
    const postmaster = new Postmaster(child, dataDir, exited, log);
    const spawnFailed = new Promise<never>((_, reject) => child.once('error', reject));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      readyLine.then(() => 'ready' as const),
      exited.then(() => 'exited' as const),
      spawnFailed,
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, 'timeout');
      }),
      new Promise<'aborted'>((resolve) => {
        signal?.addEventListener('abort', () => resolve('aborted'), { once: true });
      }),
    ])
      .catch(async (error: unknown) => {
        throw new Error(
          `Could not run ${binary}: ${error instanceof Error ? error.message : error}`,
          {
            cause: error,
          },
        );
      })
      .finally(() => clearTimeout(timer));
    if (outcome === 'ready') {
      return postmaster;
    }
    await postmaster.kill();
    const tail = postmaster.logTail();
    switch (outcome) {
      case 'exited':
        if (tail.includes('Address already in use')) {
          throw new PortInUseError(port, tail);
        }
        throw new Error(`Postgres exited during start (data directory ${dataDir}):\n${tail}`);
      case 'timeout':
        throw new Error(
          `Postgres did not become ready within ${timeoutMs} ms (data directory ${dataDir}):\n${tail}`,
        );
      case 'aborted':
        signal?.throwIfAborted();
        throw new Error('aborted');
      default:
        return outcome satisfies never;
    }
  }

  /** The server's last log lines, for error messages. */
  logTail(): string {
    return this.#log.join('\n');
  }

  /**
   * Fast shutdown (SIGINT): rolls back open transactions, writes a shutdown checkpoint, exits.
   * Falls back to `kill()` when it takes longer than `timeoutMs` (default 30,000 ms).
   */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
      return;
    }
    this.#child.kill('SIGINT');
    const exited = await Promise.race([this.#exited.then(() => true), sleep(timeoutMs, false)]);
    if (!exited) {
      await this.kill();
    }
  }

  /**
   * SIGKILL to the postmaster (its pid read from `postmaster.pid`) and to its children: a crash of
   * Postgres, not a power cut (the page cache keeps what was written but not flushed). The
   * children are killed too rather than left to notice their parent died: while one
   * lives it keeps the shared memory attached and a restart fails with "pre-existing shared memory
   * block is still in use". Resolves once none of them is left.
   */
  async kill(): Promise<void> {
    const pid = (await this.#pidFromLockFile()) ?? this.#child.pid;
    if (pid === undefined) {
      return;
    }
    const children = await childrenOf(pid);
    signal(pid, 'SIGKILL');
    for (const child of children) {
      signal(child, 'SIGKILL');
    }
    if (pid !== this.#child.pid && this.#child.pid !== undefined) {
      signal(this.#child.pid, 'SIGKILL');
    }
    await this.#exited;
    for (const child of children) {
      while (await isAlive(child)) {
        await sleep(10);
      }
    }
  }

  /**
   * SIGSTOP to the postmaster and to every child it has now: the server hangs rather than refuses.
   * Connections still open at the TCP level (the kernel accepts them) but nothing answers, so a
   * client sees its own timeouts, not errors. `resume()` undoes it; `kill()` works on a paused
   * server too.
   */
  async pause(): Promise<void> {
    await this.#signalAll('SIGSTOP');
  }

  /** SIGCONT to the postmaster and its children: a paused server carries on where it stopped. */
  async resume(): Promise<void> {
    await this.#signalAll('SIGCONT');
  }

  async #signalAll(name: NodeJS.Signals): Promise<void> {
    const pid = (await this.#pidFromLockFile()) ?? this.#child.pid;
    if (pid === undefined) {
      return;
    }
    // The postmaster first on stop (it forks no new backend once stopped), last on resume.
    if (name === 'SIGSTOP') signal(pid, name);
    for (const child of await childrenOf(pid)) {
      signal(child, name);
    }
    if (name !== 'SIGSTOP') signal(pid, name);
  }

  async #pidFromLockFile(): Promise<number | undefined> {
    try {
      const firstLine = (await readFile(join(this.#dataDir, 'postmaster.pid'), 'utf8')).split(
        '\n',
      )[0];
      const pid = Number(firstLine);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') {
      throw error;
    }
  }
}

/** The fields of /proc/PID/stat after the command name: state, ppid, ... */
async function procStat(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Alive unless gone or a zombie (dead, waiting for whoever adopted it to reap it). */
async function isAlive(pid: number): Promise<boolean> {
  const stat = await procStat(pid);
  return stat !== undefined && stat[0] !== 'Z';
}

/** The processes whose parent is `parent`, from /proc; none where there is no /proc (macOS). */
async function childrenOf(parent: number): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => []);
  const pids = entries.filter((name) => /^\d+$/.test(name)).map(Number);
  const stats = await Promise.all(pids.map(async (pid) => [pid, await procStat(pid)] as const));
  return stats.filter(([, stat]) => stat?.[1] === String(parent)).map(([pid]) => pid);
}
