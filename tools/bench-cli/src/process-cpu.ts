import { readdir, readFile } from 'node:fs/promises';

/**
 * CPU seconds of processes on this machine, from Linux's `/proc/<pid>/stat`: what a bench reports
 * per process (a node, a client, a Postgres server with its backends). Readers resolve to 0 or
 * `undefined` once the process is gone, and on a system without `/proc`.
 */

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** What a bench reads of `/proc/<pid>/stat`. */
export interface ProcStat {
  /** The parent's process id. */
  readonly ppid: number;
  /** User plus system CPU of the process, in seconds. */
  readonly cpu: number;
  /** User plus system CPU of its children that exited and were waited for, in seconds. */
  readonly childrenCpu: number;
}

/**
 * The fields of one `/proc/<pid>/stat` text. The command name (field 2, in parentheses) may hold
 * spaces and parentheses, so fields are counted from its last `)`.
 */
export function parseProcStat(text: string): ProcStat {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number): number => Number(fields[n - 3]);
  return {
    ppid: field(4),
    cpu: (field(14) + field(15)) / TICKS_PER_SECOND,
    childrenCpu: (field(16) + field(17)) / TICKS_PER_SECOND,
  };
}

/** `/proc/<pid>/stat` of a live process, or `undefined` once it is gone. */
export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStat(text);
}

/** CPU seconds `pid` has used so far (0 once it is gone). */
export async function processCpu(pid: number): Promise<number> {
  return (await readProcStat(pid))?.cpu ?? 0;
}

/**
 * CPU seconds `pid` and its children have used so far: its own, its reaped children's and its live
 * children's (not their children's), e.g. a Postgres server's postmaster, the backends that exited
 * and the backends and background processes that run. 0 once `pid` is gone.
 */
export async function processCpuWithChildren(pid: number): Promise<number> {
  const parent = await readProcStat(pid);
  if (parent === undefined) return 0;
  let total = parent.cpu + parent.childrenCpu;
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  for (const stat of await Promise.all(pids.map(readProcStat))) {
    if (stat?.ppid === pid) total += stat.cpu;
  }
  return total;
}
