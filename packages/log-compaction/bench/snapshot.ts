/**
 * Snapshot benchmark of tsraft: `./dev --filter @tsraft/log-compaction bench [--sizes 100,1024]
 * [--export-connections 2] [--baseline REF] [--rounds 1] [--modes built] [--cpu-prof DIR]
 * [--node-flags '...']`.
 *
 * For each state size (MiB), two embedded Postgres servers and two node processes
 * (`snapshot-node.ts`): a leader that creates the state and takes a snapshot of it, then a
 * follower that starts empty and gets the snapshot through the chunked InstallSnapshot over the
 * tRPC peer transport, and installs it. Prints per run the MB/s of snapshot text of each stage:
 * - export alone: the state machine's export on one connection, drained (the reference the
 *   issue names, "export 43 MB/s on one connection");
 * - create: `takeSnapshot()`, the export (`--export-connections`) saved into the snapshot store;
 * - transfer: from the follower's first piece to the whole held and checked;
 * - install: the restore into the follower's state machine;
 * - end to end: the snapshot's size over create + transfer + install;
 * the peak RSS of each node process (the whole process' life: filling, exporting, sending, or
 * receiving and restoring), and the CPU seconds each node process and each Postgres server spent
 * in each stage.
 *
 * `--modes` says which code the node processes run (`snapshot-tree.ts`): `built` (the default),
 * the packages built to JavaScript, as an application that installs them runs them; `source`, the
 * TypeScript sources (`--conditions=@tsraft/source`, as the repository's tests and demo run them:
 * Node's type stripping costs about 30 MiB of RSS). `--modes built,source` runs both.
 *
 * `--baseline REF` also runs the node program of the git commit REF (a copy of its files under
 * `.data/bench-snapshot/`, its dependencies installed from pnpm's store), alternating with this
 * tree's in every round: before and after in one run. `--cpu-prof DIR` writes V8 CPU profiles of
 * the node processes into DIR; `--node-flags` passes more flags to them (e.g. `--trace-gc`).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  baselineTree,
  benchCommandLine,
  choiceListOption,
  commitOption,
  integerListOption,
  integerOption,
} from '@tsraft/bench-cli';
import { PROCESSES, type RunResult, runSnapshotBench, STAGES } from './snapshot-run.ts';
import { CODE_MODES, NODE, nodeProgram } from './snapshot-tree.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const MiB = 1024 * 1024;

const options = await benchCommandLine(
  {
    program: 'log-compaction bench',
    options: {
      sizes: { type: 'string', default: '100,1024' },
      'export-connections': { type: 'string', default: '2' },
      baseline: { type: 'string' },
      rounds: { type: 'string', default: '1' },
      modes: { type: 'string', default: 'built' },
      'cpu-prof': { type: 'string' },
      'node-flags': { type: 'string', default: '' },
    },
  },
  async ({ values }) => ({
    sizes: integerListOption('--sizes', values.sizes, { min: 1 }),
    exportConnections: String(
      integerOption('--export-connections', values['export-connections'], { min: 1 }),
    ),
    baseline:
      values.baseline === undefined
        ? undefined
        : await commitOption('--baseline', values.baseline, REPO),
    rounds: integerOption('--rounds', values.rounds, { min: 1 }),
    modes: [...new Set(choiceListOption('--modes', values.modes, CODE_MODES))],
    nodeFlags: [
      ...values['node-flags'].split(' ').filter((flag) => flag !== ''),
      ...(values['cpu-prof'] === undefined
        ? []
        : ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`]),
    ],
  }),
);
const { sizes, rounds, modes, nodeFlags } = options;

/** The trees whose node program runs: this one, and the baseline's. */
const trees: { label: string; root: string }[] = [{ label: 'this tree', root: REPO }];
if (options.baseline !== undefined) {
  const root = await baselineTree({
    repo: REPO,
    commit: options.baseline,
    dir: join(REPO, '.data/bench-snapshot'),
    marker: NODE,
  });
  trees.unshift({ label: options.baseline, root });
}
/** Each tree's node program in each mode (building its packages for `built`). */
const programs = new Map<string, Awaited<ReturnType<typeof nodeProgram>>>();
for (const tree of trees) {
  for (const mode of modes) {
    programs.set(`${tree.root} ${mode}`, await nodeProgram(tree.root, mode));
  }
}

const results: { size: number; label: string; result: RunResult }[] = [];
for (let round = 1; round <= rounds; round++) {
  for (const size of sizes) {
    for (const tree of trees) {
      for (const mode of modes) {
        const label = `${tree.label}, ${mode}`;
        console.info(`round ${round}, state of ${size} MiB, ${label}`);
        const program = programs.get(`${tree.root} ${mode}`)!;
        const result = await runSnapshotBench({
          ...program,
          sizeMiB: size,
          exportConnections: options.exportConnections,
          nodeFlags,
        });
        results.push({ size, label, result });
      }
    }
  }
}

const mbps = (bytes: number, seconds: number): string => (bytes / 1e6 / seconds).toFixed(1);
const rss = (bytes: number): string => String(Math.round(bytes / MiB));
const ordered = [...results].sort((x, y) => x.size - y.size);
printTable(
  [
    'state',
    'code',
    'export alone',
    'create',
    'transfer',
    'install',
    'end to end',
    'seconds',
    'peak RSS leader / follower MiB',
    'of which at start',
  ],
  ordered.map(({ size, label, result: r }) => {
    const total = r.seconds.create + r.seconds.transfer + r.seconds.install;
    return [
      `${size} MiB`,
      label,
      mbps(r.exportedBytes, r.seconds.export),
      mbps(r.bytes, r.seconds.create),
      mbps(r.bytes, r.seconds.transfer),
      mbps(r.bytes, r.seconds.install),
      mbps(r.bytes, total),
      total.toFixed(1),
      `${rss(r.rss.leader)} / ${rss(r.rss.follower)}`,
      `${rss(r.startRss.leader)} / ${rss(r.startRss.follower)}`,
    ];
  }),
);
console.info(
  '\nMB/s: 10^6 bytes of snapshot text per second (export alone: on 1 connection; create: on ' +
    `${options.exportConnections}). Targets: end to end >= 50 MB/s; peak RSS < 256 MiB at 1 GiB.\n` +
    'Code: "built", the packages built to JavaScript (what an application that installs them ' +
    'runs); "source", the TypeScript sources through Node\'s type stripping (tests, the demo).\n',
);
printTable(
  [
    'state',
    'code',
    'stage',
    'seconds',
    ...PROCESSES.map((p) => `CPU s ${p}`),
    'peak RSS so far MiB',
  ],
  ordered.flatMap(({ size, label, result: r }) =>
    STAGES.map((stage) => [
      `${size} MiB`,
      label,
      stage,
      r.seconds[stage].toFixed(2),
      ...r.cpu[stage].map((seconds) => seconds.toFixed(2)),
      rss(r.stageRss[stage]),
    ]),
  ),
);
console.info(
  '\nCPU: user + system seconds of each node process, and of each Postgres server. Peak RSS so ' +
    'far: of the leader after export and create, of the follower after transfer and install. ' +
    '"At start": once the node process loaded its modules, opened its stores and started its node ' +
    '(the leader after filling its table).',
);
process.exit(0);

function printTable(head: readonly string[], rows: readonly string[][]): void {
  const widths = head.map((cell, i) =>
    Math.max(cell.length, ...rows.map((row) => row[i]?.length ?? 0)),
  );
  const line = (row: readonly string[]): string =>
    `| ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.info(`\n${line(head)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.info(line(row));
}
