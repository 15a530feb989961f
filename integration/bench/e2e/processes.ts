import { type ChildProcess, fork, spawn } from 'node:child_process';
import type { ClientCommand, ClientReport } from './client-protocol.ts';

/** Node flags of every process the benchmark starts: workspace sources, and `extra`. */
function nodeFlags(extra: readonly string[]): string[] {
  return ['--conditions=@tsraft/source', ...extra];
}

/**
 * A server process of the benchmark (`app-server.ts`): started with `env`, ready once it prints
 * `{"ready":true}`; stopped by closing its stdin (killed if it has not exited 5 s later).
 */
export class ServerProcess implements AsyncDisposable {
  readonly label: string;
  readonly child: ChildProcess;
  #output = '';

  private constructor(label: string, child: ChildProcess) {
    this.label = label;
    this.child = child;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  static async start(options: {
    label: string;
    entry: string;
    env: Record<string, string>;
    nodeFlags: readonly string[];
  }): Promise<ServerProcess> {
    const child = spawn(process.execPath, [...nodeFlags(options.nodeFlags), options.entry], {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const server = new ServerProcess(options.label, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${options.label} did not start in 60 s: ${server.#output}`)),
        60_000,
      );
      const record = (chunk: Buffer): void => {
        server.#output = (server.#output + chunk.toString()).slice(-4_000);
        if (server.#output.includes('{"ready":true}')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', record);
      child.stderr?.on('data', record);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${options.label} exited (${code ?? signal}): ${server.#output}`));
      });
    });
    return server;
  }

  /** What the process printed last (its last 4,000 characters). */
  get output(): string {
    return this.#output;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** The client process (`load-client.ts`), driven over its IPC channel. */
export class ClientProcess implements AsyncDisposable {
  readonly child: ChildProcess;
  #listener: ((report: ClientReport) => void) | undefined;

  private constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (report: ClientReport) => this.#listener?.(report));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  static async start(options: {
    entry: string;
    nodeFlags: readonly string[];
  }): Promise<ClientProcess> {
    const child = fork(options.entry, [], {
      execArgv: nodeFlags(options.nodeFlags),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const client = new ClientProcess(child);
    await new Promise<void>((resolve, reject) => {
      client.#listener = (report) => {
        if (report.type === 'ready') resolve();
      };
      child.once('exit', (code) => reject(new Error(`the client process exited (${code})`)));
    });
    return client;
  }

  /**
   * Runs `command`; calls `onWindow('start' | 'end')` at the edges of the measured window, and
   * resolves with the final report.
   */
  run(
    command: ClientCommand,
    onWindow: (edge: 'start' | 'end') => Promise<void>,
  ): Promise<ClientReport & { type: 'done' }> {
    return new Promise((resolve, reject) => {
      let edges = Promise.resolve();
      this.#listener = (report) => {
        switch (report.type) {
          case 'window-start':
            edges = edges.then(() => onWindow('start'));
            break;
          case 'window-end':
            edges = edges.then(() => onWindow('end'));
            break;
          case 'done':
            edges.then(() => resolve(report), reject);
            break;
          case 'failed':
            reject(new Error(`the client failed: ${report.message}`));
            break;
          case 'ready':
            break;
        }
      };
      this.child.send(command);
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
