/** Messages between `main.ts` and the client process (`load-client.ts`). */

/** A system the client writes to. */
export type Target =
  | {
      readonly kind: 'replicated';
      /** Identifies the client to reuse across runs. */
      readonly name: string;
      /** Node id to the URL of its tRPC app. */
      readonly nodes: Readonly<Record<string, string>>;
      /** The node the failover link starts at. */
      readonly initial: string;
      /** `httpBatchLink` instead of `httpLink`. */
      readonly batch: boolean;
    }
  | {
      readonly kind: 'direct';
      readonly name: string;
      readonly url: string;
      readonly batch: boolean;
    }
  | { readonly kind: 'etcd'; readonly name: string; readonly hosts: readonly string[] };

/** Parent to client: run one measurement. */
export interface ClientCommand {
  readonly target: Target;
  readonly inflight: number;
  readonly warmupMs: number;
  readonly windowMs: number;
}

/** Client to parent. */
export type ClientReport =
  | { readonly type: 'ready' }
  | { readonly type: 'window-start' }
  | { readonly type: 'window-end' }
  | {
      readonly type: 'done';
      /** Writes acknowledged inside the window. */
      readonly windowWrites: number;
      /** The window's length. */
      readonly seconds: number;
      /** Latency percentiles of the window's writes, in ms. */
      readonly p50: number;
      readonly p99: number;
      /** Writes acknowledged in the whole run (warm-up, window and drain). */
      readonly total: number;
      readonly errors: number;
      readonly firstError?: string;
    }
  | { readonly type: 'failed'; readonly message: string };
