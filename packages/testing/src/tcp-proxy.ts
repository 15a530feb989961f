import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { pickLoopbackPort } from '@tsraft/core/testing';

/** Where a {@link TcpProxy} forwards to. */
export interface ProxyTarget {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link TcpProxy.start}. */
export interface TcpProxyOptions {
  /** Where connections go. */
  readonly target: ProxyTarget;
  /** A name for error messages, e.g. `n1->n2`. */
  readonly name: string;
}

/** A connection through the proxy: the accepted socket and, once connected, the upstream one. */
interface Link {
  readonly client: Socket;
  upstream: Socket | undefined;
}

/**
 * A fault-injecting TCP proxy on 127.0.0.1: one per peer link of a nemesis cluster (and one in
 * front of each node's Postgres, so that the node's address of it survives a restart that moves
 * the server to another port).
 *
 * Open, it forwards bytes both ways. Cut ({@link cut}), it behaves like a network that drops
 * every packet: connections open and new ones are accepted, but no byte gets through in either
 * direction (what arrives is read and discarded), so the two ends only notice through their own
 * timeouts, never through a refusal or a reset. {@link heal} opens it again and destroys the
 * connections that lived through the cut (their streams lost bytes: nothing may reuse them).
 */
export class TcpProxy implements AsyncDisposable {
  readonly name: string;
  readonly port: number;
  readonly #server: Server;
  readonly #links = new Set<Link>();
  #target: ProxyTarget;
  #cut = false;
  #dropped = 0;

  private constructor(server: Server, port: number, options: TcpProxyOptions) {
    this.#server = server;
    this.port = port;
    this.name = options.name;
    this.#target = options.target;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Listens on a free loopback port (see `pickLoopbackPort`). */
  static async start(options: TcpProxyOptions): Promise<TcpProxy> {
    for (let attempt = 1; ; attempt++) {
      const port = await pickLoopbackPort();
      const server = createServer({ noDelay: true });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        return new TcpProxy(server, port, options);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 3) throw error;
      }
    }
  }

  /** Whether the link is cut. */
  get isCut(): boolean {
    return this.#cut;
  }

  /** Bytes read and discarded while cut, since the proxy started. */
  get droppedBytes(): number {
    return this.#dropped;
  }

  /** Where new connections go from now on (connections already open keep their target). */
  retarget(target: ProxyTarget): void {
    this.#target = target;
  }

  /** Drops every byte from now on, of the connections open now and of new ones. Idempotent. */
  cut(): void {
    if (this.#cut) return;
    this.#cut = true;
    for (const link of this.#links) this.#freeze(link);
  }

  /** Forwards again; the connections that lived through the cut are destroyed. Idempotent. */
  heal(): void {
    if (!this.#cut) return;
    this.#cut = false;
    for (const link of this.#links) this.#destroy(link);
  }

  /** Destroys every connection and stops listening. */
  async close(): Promise<void> {
    for (const link of this.#links) this.#destroy(link);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #accept(client: Socket): void {
    const link: Link = { client, upstream: undefined };
    this.#links.add(link);
    client.on('error', () => this.#destroy(link));
    client.on('close', () => this.#destroy(link));
    if (this.#cut) {
      this.#freeze(link);
      return;
    }
    const upstream = tcpConnect({ ...this.#target, noDelay: true });
    link.upstream = upstream;
    upstream.on('error', () => this.#destroy(link));
    upstream.on('close', () => this.#destroy(link));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Stops forwarding on `link` and discards whatever arrives at either end. */
  #freeze(link: Link): void {
    const { client, upstream } = link;
    if (upstream !== undefined) {
      client.unpipe(upstream);
      upstream.unpipe(client);
    }
    for (const socket of upstream === undefined ? [client] : [client, upstream]) {
      socket.on('data', (chunk: Buffer) => {
        this.#dropped += chunk.length;
      });
      socket.resume();
    }
  }

  #destroy(link: Link): void {
    if (!this.#links.delete(link)) return;
    link.client.destroy();
    link.upstream?.destroy();
  }
}
