import { describe, expect, it } from 'vitest';
import { FaultInjector } from './fault-injector.ts';
import { InProcessNetwork, UnreachableError } from './in-process-transport.ts';

function pair(injector: FaultInjector) {
  const network = new InProcessNetwork();
  const a = injector.wrap('a', network.transport('a'));
  const b = injector.wrap('b', network.transport('b'));
  b.listen(async () => ({ type: 'ack' }));
  a.listen(async () => ({ type: 'ack' }));
  return { a, b };
}

const ping = { type: 'raft', messages: [] } as const;

describe('FaultInjector', () => {
  it('passes requests through when no fault is set', async () => {
    const { a } = pair(new FaultInjector());
    await expect(a.request('b', ping, { signal: AbortSignal.timeout(1000) })).resolves.toEqual({
      type: 'ack',
    });
  });

  it('a blocked link rejects at once, in one direction only, until healed', async () => {
    const injector = new FaultInjector();
    const { a, b } = pair(injector);
    injector.block('a', 'b');
    await expect(a.request('b', ping, { signal: AbortSignal.timeout(1000) })).rejects.toThrow(
      UnreachableError,
    );
    await expect(b.request('a', ping, { signal: AbortSignal.timeout(1000) })).resolves.toEqual({
      type: 'ack',
    });
    injector.heal();
    await expect(a.request('b', ping, { signal: AbortSignal.timeout(1000) })).resolves.toEqual({
      type: 'ack',
    });
  });

  it('a partition cuts both ways between groups', async () => {
    const injector = new FaultInjector();
    const { a, b } = pair(injector);
    injector.partition(['a'], ['b']);
    await expect(a.request('b', ping, { signal: AbortSignal.timeout(1000) })).rejects.toThrow();
    await expect(b.request('a', ping, { signal: AbortSignal.timeout(1000) })).rejects.toThrow();
  });

  it('a dropped request waits for the caller’s deadline, like a lost packet', async () => {
    const injector = new FaultInjector();
    const { a } = pair(injector);
    injector.drop(1);
    const started = performance.now();
    await expect(a.request('b', ping, { signal: AbortSignal.timeout(50) })).rejects.toThrow();
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });

  it('delays requests by a time within the range', async () => {
    const injector = new FaultInjector({ seed: 7 });
    const { a } = pair(injector);
    injector.delay(30, 40);
    const started = performance.now();
    await a.request('b', ping, { signal: AbortSignal.timeout(1000) });
    expect(performance.now() - started).toBeGreaterThanOrEqual(29);
  });

  it('refuses rates and ranges that make no sense', () => {
    const injector = new FaultInjector();
    expect(() => injector.drop(1.5)).toThrow(RangeError);
    expect(() => injector.delay(10, 5)).toThrow(RangeError);
  });
});
