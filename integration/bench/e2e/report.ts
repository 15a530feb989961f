/**
 * The systems `bench:e2e` compares: `tsraft`, `tsraft-batch` (httpBatchLink), `postgres`, `etcd`,
 * and a baseline's `tsraft@<commit>`, `tsraft-batch@<commit>`.
 */
export type SystemName = string;

/** One measured run of one system at one number of writes in flight. */
export interface RunResult {
  readonly system: SystemName;
  readonly inflight: number;
  readonly writesPerSecond: number;
  /** Latency of the window's writes, ms. */
  readonly p50: number;
  readonly p99: number;
  /** CPU milliseconds per write in the window. */
  readonly cpuPerWrite: {
    readonly client: number;
    readonly processes: readonly { readonly label: string; readonly ms: number }[];
    /** The server processes together (nodes, the app, etcd members). */
    readonly servers: number;
    /** All Postgres servers together; `undefined` when not measurable (container). */
    readonly postgres: number | undefined;
    readonly total: number;
  };
  readonly walSyncsPerWrite: number;
  readonly transactionsPerWrite: number | undefined;
  /** Where the tsraft client started. */
  readonly startedAt: string | undefined;
  readonly errors: number;
  readonly firstError: string | undefined;
  /**
   * Of a tsraft run: the writes its followers served, each forwarded to the leader (warm-up and
   * drain included, as `writes`); `undefined` when the nodes do not count them.
   */
  readonly viaFollower?: number | undefined;
  /** Writes acknowledged in the whole run (warm-up, window and drain). */
  readonly writes?: number;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n >= 10 ? n.toFixed(1) : n.toFixed(2));
const cpu = (n: number | undefined): string => (n === undefined ? 'n/a' : n.toFixed(3));

/** Prints the results as Markdown tables: per system and level, then the ratios and targets. */
export function printReport(options: {
  results: readonly RunResult[];
  idle: readonly { name: SystemName; cpuPerSecond: number }[];
  levels: readonly number[];
  date: string;
  machine: string;
}): void {
  const { results, levels } = options;
  const systems = [...new Set(results.map((r) => r.system))];
  const lines: string[] = [];
  lines.push('');
  lines.push(`bench:e2e, ${options.date}, ${options.machine}`);
  lines.push('');
  lines.push(
    '| in flight | system | writes/s (median, min-max) | p50 ms | p99 ms | CPU ms/write: client | servers (each) | Postgres | total | WAL fsyncs/write | xacts/write |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
  const medians = new Map<string, number>();
  for (const inflight of levels) {
    for (const system of systems) {
      const runs = results.filter((r) => r.system === system && r.inflight === inflight);
      if (runs.length === 0) continue;
      const rate = median(runs.map((r) => r.writesPerSecond));
      medians.set(`${system}/${inflight}`, rate);
      const range = `${int(Math.min(...runs.map((r) => r.writesPerSecond)))}-${int(Math.max(...runs.map((r) => r.writesPerSecond)))}`;
      const labels = runs[0]?.cpuPerWrite.processes.map((p) => p.label) ?? [];
      const each = labels
        .map(
          (label, i) =>
            `${label} ${median(runs.map((r) => r.cpuPerWrite.processes[i]?.ms ?? 0)).toFixed(3)}`,
        )
        .join(', ');
      const postgres = runs.every((r) => r.cpuPerWrite.postgres !== undefined)
        ? median(runs.map((r) => r.cpuPerWrite.postgres as number))
        : undefined;
      const transactions = runs.every((r) => r.transactionsPerWrite !== undefined)
        ? median(runs.map((r) => r.transactionsPerWrite as number)).toFixed(2)
        : 'n/a';
      const errors = runs.reduce((sum, r) => sum + r.errors, 0);
      lines.push(
        `| ${inflight} | ${system}${errors > 0 ? ` (${errors} errors)` : ''} | ${int(rate)} (${range}) | ${ms(median(runs.map((r) => r.p50)))} | ${ms(median(runs.map((r) => r.p99)))} | ${cpu(median(runs.map((r) => r.cpuPerWrite.client)))} | ${cpu(median(runs.map((r) => r.cpuPerWrite.servers)))} (${each}) | ${cpu(postgres)} | ${cpu(median(runs.map((r) => r.cpuPerWrite.total)))} | ${median(runs.map((r) => r.walSyncsPerWrite)).toFixed(2)} | ${transactions} |`,
      );
    }
  }
  const startedAt = results.find((r) => r.startedAt !== undefined)?.startedAt;
  if (startedAt !== undefined) {
    lines.push('');
    lines.push(
      `The tsraft clients' failover links started at ${startedAt} (see --start-at); "(leader)" marks the leader's process.`,
    );
    const forwarded = results.filter((r) => r.viaFollower !== undefined);
    if (forwarded.length > 0) {
      lines.push(
        `Writes that took a follower's forwarding hop, of all writes of the run: ${forwarded
          .map(
            (r) =>
              `${r.system} at ${r.inflight} in flight ${r.viaFollower} of ${int(r.writes ?? 0)}`,
          )
          .join('; ')}.`,
      );
    }
  }
  lines.push('');
  const raftSystems = systems.filter((name) => name.startsWith('tsraft'));
  const ratio = (a: number | undefined, b: number | undefined): string =>
    a === undefined || b === undefined ? 'n/a' : (a / b).toFixed(2);
  lines.push(
    `| in flight | ${raftSystems.map((name) => `${name} / etcd | ${name} / Postgres without Raft`).join(' | ')} |`,
  );
  lines.push(`|---|${raftSystems.map(() => '---|---|').join('')}`);
  for (const inflight of levels) {
    const etcd = medians.get(`etcd/${inflight}`);
    const direct = medians.get(`postgres/${inflight}`);
    const cells = raftSystems.map((name) => {
      const rate = medians.get(`${name}/${inflight}`);
      return `${ratio(rate, etcd)} | ${ratio(rate, direct)}`;
    });
    lines.push(`| ${inflight} | ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push('| system | CPU ms per second at rest (server processes and Postgres) |');
  lines.push('|---|---|');
  for (const { name, cpuPerSecond } of options.idle)
    lines.push(`| ${name} | ${cpuPerSecond.toFixed(1)} |`);
  lines.push('');
  console.info(lines.join('\n'));
}
