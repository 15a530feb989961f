import { readdir, readFile } from 'node:fs/promises';

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
const TICKS_PER_SECOND = 100;

interface ProcStat {
  readonly ppid: number;
  /** User plus system CPU, in seconds. */
  readonly cpu: number;
  /** User plus system CPU of reaped children, in seconds. */
  readonly childrenCpu: number;
}

/** `/proc/<pid>/stat`, or `undefined` once the process is gone. */
async function procStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields count from its end.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number): number => Number(fields[n - 3]);
  return {
    ppid: field(4),
    cpu: (field(14) + field(15)) / TICKS_PER_SECOND,
    childrenCpu: (field(16) + field(17)) / TICKS_PER_SECOND,
  };
}

/** CPU seconds `pid` has used so far (0 once it is gone). */
export async function processCpu(pid: number): Promise<number> {
  return (await procStat(pid))?.cpu ?? 0;
}

/**
 * CPU seconds a Postgres server has used so far: its postmaster, the postmaster's reaped children
 * (backends that exited) and its live children (backends and background processes).
 */
export async function postgresCpu(postmaster: number): Promise<number> {
  const root = await procStat(postmaster);
  if (root === undefined) return 0;
  let total = root.cpu + root.childrenCpu;
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const stats = await Promise.all(pids.map(procStat));
  for (const stat of stats) if (stat?.ppid === postmaster) total += stat.cpu;
  return total;
}

/**
 * The postmaster of the backend `backendPid` serving a connection from local port `clientPort`,
 * when this machine's `/proc` shows it (a server on this host, not in a container's namespace):
 * the backend's process title names the client's address and port.
 */
export async function localPostmaster(
  backendPid: number,
  clientPort: number,
): Promise<number | undefined> {
  try {
    const title = await readFile(`/proc/${backendPid}/cmdline`, 'utf8');
    if (!title.startsWith('postgres') || !title.includes(`(${clientPort})`)) return undefined;
  } catch {
    return undefined;
  }
  return (await procStat(backendPid))?.ppid;
}
