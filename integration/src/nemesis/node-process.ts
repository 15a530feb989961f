import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ENTRY = fileURLToPath(new URL('./node/nemesis-node.ts', import.meta.url));

/** How long a node process may take to say it is ready. */
const READY_TIMEOUT_MS = 60_000;

/** A JSON line a node printed: an event (`event`) or a log line (`level`, `msg`). */
export interface NodeLine {
  readonly node: string;
  /** The node's `Date.now()` when it printed the line. */
  readonly t: number;
  readonly event?: string;
  readonly level?: string;
  readonly msg?: string;
  readonly [field: string]: unknown;
}

/** Options of {@link NodeProcess}. */
export interface NodeProcessOptions {
  readonly id: string;
  /** The node's environment (see `node/nemesis-node.ts`), added to this process' own. */
  readonly env: Readonly<Record<string, string>>;
  /** Where everything the node prints goes, and the harness' notes about it. */
  readonly logFile: string;
  /** Called with each JSON line the node prints. */
  readonly onLine: (line: NodeLine) => void;
  /** Called when the process exits without the harness killing or stopping it: a crash. */
  readonly onCrash: (crash: { readonly id: string; readonly exit: string }) => void;
}

/** Every node process alive, killed should the harness exit without disposing of them. */
const alive = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of alive) child.kill('SIGKILL');
});

/**
 * One nemesis node as an OS process (`node/nemesis-node.ts`), which the harness starts, kills
 * (SIGKILL: no chance to close anything), pauses (SIGSTOP) and resumes (SIGCONT). Its output goes
 * to its log file, one line each, with the harness' own notes (`{"harness": ...}`) in between.
 */
export class NodeProcess implements AsyncDisposable {
  readonly id: string;
  readonly #options: NodeProcessOptions;
  readonly #log: WriteStream;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #paused = false;
  /** Set while the harness kills the process: that exit is expected. */
  #killing = false;
  /** Whether the running process said it was ready (an exit before is a failed start). */
  #ready = false;

  constructor(options: NodeProcessOptions) {
    this.id = options.id;
    this.#options = options;
    this.#log = createWriteStream(options.logFile, { flags: 'a' });
  }

  /** Whether the process runs (paused or not). */
  get running(): boolean {
    return this.#child !== undefined;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Writes a note of the harness into the node's log. */
  note(text: string): void {
    this.#log.write(`${JSON.stringify({ t: Date.now(), harness: text })}\n`);
  }

  /** Starts the process; resolves once it serves (its `ready` line). */
  async start(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#child !== undefined) throw new Error(`node ${this.id} is already running`);
    this.note('start');
    const child = spawn(process.execPath, ['--conditions=@tsraft/source', ENTRY], {
      env: { ...process.env, ...this.#options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    alive.add(child);
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        alive.delete(child);
        if (this.#child === child) {
          this.#child = undefined;
          this.#paused = false;
        }
        const exit = signal ?? `exit code ${code}`;
        this.note(`exited (${exit})`);
        if (!this.#killing && this.#ready) this.#options.onCrash({ id: this.id, exit });
        this.#ready = false;
        resolve();
      });
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`node ${this.id} was not ready within ${READY_TIMEOUT_MS} ms`)),
        READY_TIMEOUT_MS,
      );
      const onAbort = (): void => reject(options.signal?.reason);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = (): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      createInterface({ input: child.stdout }).on('line', (text) => {
        this.#log.write(`${text}\n`);
        const line = parseLine(this.id, text);
        if (line === undefined) return;
        if (line.event === 'ready') {
          this.#ready = true;
          settle();
          resolve();
        }
        this.#options.onLine(line);
      });
      createInterface({ input: child.stderr }).on('line', (text) => {
        this.#log.write(`${JSON.stringify({ t: Date.now(), stderr: text })}\n`);
      });
      void this.#exited.then(() => {
        settle();
        reject(
          new Error(`node ${this.id} exited before it was ready; see ${this.#options.logFile}`),
        );
      });
    });
    try {
      await ready;
    } catch (error) {
      await this.kill();
      throw error;
    }
  }

  /** SIGKILL, like a power cut; resolves once the process is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.note('SIGKILL');
    this.#killing = true;
    child.kill('SIGKILL');
    await this.#exited;
    this.#killing = false;
  }

  /** SIGSTOP: the process freezes (its timers, its sockets) until {@link resume}. */
  pause(): void {
    const child = this.#child;
    if (child === undefined || this.#paused) return;
    this.note('SIGSTOP');
    child.kill('SIGSTOP');
    this.#paused = true;
  }

  /** SIGCONT. */
  resume(): void {
    const child = this.#child;
    if (child === undefined || !this.#paused) return;
    this.note('SIGCONT');
    child.kill('SIGCONT');
    this.#paused = false;
  }

  /** Kills the process if it runs and closes the log. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
    await new Promise<void>((resolve) => this.#log.end(resolve));
  }
}

function parseLine(node: string, text: string): NodeLine | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    return { ...(JSON.parse(text) as { t: number }), node };
  } catch {
    return undefined;
  }
}
