/**
 * Summarizes V8 CPU profiles (`.cpuprofile`, as `bench:e2e --cpu-prof DIR` writes them): for each
 * profile, the share of samples by where the code lives (a package, a workspace source file,
 * Node's internals, GC, idle) and the functions with the most self time.
 *
 *   node integration/bench/e2e/profile-summary.ts DIR-or-FILES... [--top 25] [--from S] [--to S]
 *
 * `--from S` leaves out the first S seconds of each profile (a process' start-up: module
 * loading and compiling), so that what remains is the steady state of the measured load; `--to S`
 * leaves out what comes after S seconds. Together they pick one run of a process that served
 * several (the client process writes to every system in turn).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { benchCommandLine, integerOption, numberOption, UsageError } from '@tsraft/bench-cli';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

const { top, fromMicros, toMicros, files } = await benchCommandLine(
  {
    program: 'profile-summary',
    options: {
      top: { type: 'string', default: '25' },
      from: { type: 'string', default: '0' },
      to: { type: 'string' },
    },
    allowPositionals: true,
  },
  async ({ values, positionals }) => {
    const from = numberOption('--from', values.from, { atLeast: 0 });
    return {
      top: integerOption('--top', values.top, { min: 1 }),
      fromMicros: from * 1e6,
      toMicros:
        values.to === undefined
          ? Number.POSITIVE_INFINITY
          : numberOption('--to', values.to, { above: from }) * 1e6,
      files: await profileFiles(positionals),
    };
  },
);

for (const file of files) summarize(file, JSON.parse(await readFile(file, 'utf8')) as Profile);

/** Where a frame's code lives. */
function place(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(idle)' || functionName === '(program)') return functionName;
    if (functionName === '(garbage collector)') return '(gc)';
    return '(native)';
  }
  const modules = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules !== null) return modules[1] as string;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const workspace = /\/(packages\/[^/]+|integration|examples\/[^/]+)\/(.*)$/.exec(url);
  if (workspace !== null) return `${workspace[1]}/${workspace[2]}`;
  return url;
}

function summarize(file: string, profile: Profile): void {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  let at = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= fromMicros && at < toMicros) self.set(id, (self.get(id) ?? 0) + delta);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self].reduce((sum, [id, us]) => {
    const name = byId.get(id)?.callFrame.functionName;
    return name === '(idle)' ? sum + us : sum;
  }, 0);
  const busy = total - idle;
  const byPlace = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const [id, us] of self) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined || frame.functionName === '(idle)') continue;
    const where = place(frame.url, frame.functionName);
    byPlace.set(where, (byPlace.get(where) ?? 0) + us);
    const name = `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
  }
  // Inclusive: the busy time during which some frame of a place is on the stack.
  const parent = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    if (byId.get(id)?.callFrame.functionName === '(idle)') continue;
    const places = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame !== undefined && frame.url !== '') places.add(place(frame.url, frame.functionName));
    }
    for (const where of places) inclusive.set(where, (inclusive.get(where) ?? 0) + us);
  }
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  console.info(
    `\n${file}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(2)} s busy (not idle)`,
  );
  console.info('  self time by place (share of busy time):');
  for (const [where, us] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.info(`    ${pct(us)}  ${where}`);
  }
  console.info('  time with a frame of the place on the stack (inclusive):');
  for (const [where, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.info(`    ${pct(us)}  ${where}`);
  }
  console.info('  functions with the most self time:');
  for (const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.info(`    ${pct(us)}  ${name}`);
  }
}

/** The `.cpuprofile` files named, or found in the folders named (sorted by name). */
async function profileFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    const found = await stat(path).catch(() => undefined);
    if (found === undefined) throw new UsageError(`no file or folder "${path}"`);
    if (found.isDirectory()) {
      for (const name of (await readdir(path)).sort()) {
        if (name.endsWith('.cpuprofile')) files.push(join(path, name));
      }
    } else {
      files.push(path);
    }
  }
  if (files.length === 0) throw new UsageError('no .cpuprofile files given (a folder or files)');
  return files;
}
