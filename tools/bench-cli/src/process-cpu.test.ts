import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { parseProcStat, processCpu, processCpuWithChildren, readProcStat } from './process-cpu.ts';

/** A child process that spends `seconds` of CPU, says so on stdout, then waits to be killed. */
async function cpuBurner(seconds: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [
    '-e',
    `const start = process.cpuUsage();
     const used = () => { const u = process.cpuUsage(start); return (u.user + u.system) / 1e6; };
     while (used() < ${seconds}) {}
     console.log('burnt');
     setInterval(() => {}, 1000);`,
  ]);
  await once(child.stdout!, 'data');
  return child;
}

describe('parseProcStat', () => {
  it('counts fields from the end of the command name, which may hold spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    const text = '4242 (a) b (c) S 17 4242 4242 0 -1 4194560 10 0 0 0 250 50 1000 30 20 0 1 0\n';
    expect(parseProcStat(text)).toEqual({ ppid: 17, cpu: 3, childrenCpu: 10.3 });
  });
});

// /proc is Linux's: elsewhere these are reported as skipped, and the readers give 0 / undefined.
describe.skipIf(process.platform !== 'linux')('reading /proc', () => {
  it("reads this process' parent", async () => {
    expect((await readProcStat(process.pid))?.ppid).toBe(process.ppid);
  });

  it('gives the CPU a process spent, and 0 once it is gone', async () => {
    const child = await cpuBurner(0.3);
    const pid = child.pid as number;
    try {
      const cpu = await processCpu(pid);
      expect(cpu).toBeGreaterThanOrEqual(0.25);
      expect(cpu).toBeLessThan(30);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    expect(await processCpu(pid)).toBe(0);
    expect(await readProcStat(pid)).toBeUndefined();
  });

  it('adds the CPU of live children and of children that exited to the parent', async () => {
    const before = await processCpuWithChildren(process.pid);
    const own = async () => (await readProcStat(process.pid))!.cpu;
    const live = await cpuBurner(0.3);
    try {
      const withLive = await processCpuWithChildren(process.pid);
      expect(withLive - before).toBeGreaterThanOrEqual(0.25);
      expect(withLive - (await own())).toBeGreaterThanOrEqual(0.25);
    } finally {
      live.kill('SIGKILL');
      await once(live, 'exit');
    }
    // Reaped now: its CPU moved to this process' children's count, and stays in the total.
    const stat = await readProcStat(process.pid);
    expect(stat!.childrenCpu).toBeGreaterThanOrEqual(0.25);
    expect((await processCpuWithChildren(process.pid)) - (await own())).toBeGreaterThanOrEqual(
      0.25,
    );
  });
});
