import { describe, expect, it } from 'vitest';
import type { AppliedEntry, ClientSession } from '../state-machine.ts';
import { collectChunks, streamOf } from './byte-streams.ts';
import { type KvCommand, KvStateMachine } from './kv-state-machine.ts';

const T0 = 1_700_000_000_000;
const HOUR = 60 * 60 * 1_000;

/** Entries numbered from `first`, term 1, all stamped `timestamp`. */
function commands(
  first: number,
  list: readonly (KvCommand | [KvCommand, ClientSession])[],
  timestamp = T0,
): AppliedEntry<KvCommand>[] {
  return list.map((item, i) => {
    const [command, session] = Array.isArray(item) ? item : [item, undefined];
    return { kind: 'command', index: first + i, term: 1, timestamp, command, session };
  });
}

describe('KvStateMachine', () => {
  it('executes get, put, append and cas, returning the value after each', async () => {
    const kv = new KvStateMachine();
    const results = await kv.apply(
      commands(1, [
        { op: 'get', key: 'x' },
        { op: 'append', key: 'x', value: 'ab' },
        { op: 'append', key: 'x', value: 'c' },
        { op: 'cas', key: 'x', expected: 'zz', value: 'no' },
        { op: 'cas', key: 'x', expected: 'abc', value: 'yes' },
        { op: 'cas', key: 'y', expected: null, value: 'created' },
        { op: 'cas', key: 'z', expected: '', value: 'absent is not empty' },
        { op: 'put', key: 'x', value: 'v' },
        { op: 'get', key: 'x' },
      ]),
    );
    expect(results.map((result) => (result?.status === 'ok' ? result.value : result))).toEqual([
      { op: 'get', value: null },
      { op: 'append', value: 'ab' },
      { op: 'append', value: 'abc' },
      { op: 'cas', ok: false, value: 'abc' },
      { op: 'cas', ok: true, value: 'yes' },
      { op: 'cas', ok: true, value: 'created' },
      { op: 'cas', ok: false, value: null },
      { op: 'put', value: 'v' },
      { op: 'get', value: 'v' },
    ]);
    expect(kv.get('x')).toBe('v');
    expect(kv.get('z')).toBeNull();
    expect(kv.read((data) => [...data.keys()].sort())).toEqual(['x', 'y']);
    expect(await kv.lastApplied()).toEqual({ index: 9, term: 1 });
  });

  it('advances the applied position over internal entries, answering undefined', async () => {
    const kv = new KvStateMachine();
    const results = await kv.apply([
      { kind: 'internal', index: 1, term: 1 },
      ...commands(2, [{ op: 'put', key: 'k', value: '1' }]),
      { kind: 'internal', index: 3, term: 2 },
    ]);
    expect(results).toEqual([
      undefined,
      { status: 'ok', value: { op: 'put', value: '1' } },
      undefined,
    ]);
    expect(await kv.lastApplied()).toEqual({ index: 3, term: 2 });
  });

  it('throws, applying nothing, on a batch that does not follow the last applied entry', async () => {
    const kv = new KvStateMachine();
    await kv.apply(commands(1, [{ op: 'put', key: 'k', value: '1' }]));
    await expect(kv.apply(commands(3, [{ op: 'put', key: 'k', value: '3' }]))).rejects.toThrow(
      /entry 3 does not follow the last applied entry 1/,
    );
    const gap = [
      ...commands(2, [{ op: 'put', key: 'k', value: '2' }]),
      ...commands(4, [{ op: 'get', key: 'k' }]),
    ];
    await expect(kv.apply(gap)).rejects.toThrow(/entry 4/);
    expect(kv.get('k')).toBe('1');
    expect(await kv.lastApplied()).toEqual({ index: 1, term: 1 });
  });

  it('executes a command of a session once; a retry answers the recorded result (thesis 6.3)', async () => {
    const kv = new KvStateMachine();
    const session = { clientId: 'c1', seq: 1 };
    const append: KvCommand = { op: 'append', key: 'log', value: 'x' };
    // The client's first attempt committed, its retry committed again as a new entry.
    const [first, retry] = await kv.apply(
      commands(1, [
        [append, session],
        [append, session],
      ]),
    );
    expect(first).toEqual({ status: 'ok', value: { op: 'append', value: 'x' } });
    expect(retry).toEqual(first);
    expect(kv.get('log')).toBe('x');
    // A command without a session has no such protection.
    await kv.apply(commands(3, [append]));
    expect(kv.get('log')).toBe('xx');
  });

  it('answers SessionConflictError to a different command reusing a stamp, executing nothing; a snapshot keeps the digest', async () => {
    const kv = new KvStateMachine();
    const session = { clientId: 'c1', seq: 1 };
    const [first, reused] = await kv.apply(
      commands(1, [
        [{ op: 'put', key: 'a', value: '1' }, session],
        [{ op: 'put', key: 'b', value: '2' }, session],
      ]),
    );
    expect(first).toEqual({ status: 'ok', value: { op: 'put', value: '1' } });
    expect(reused).toMatchObject({
      status: 'error',
      error: { name: 'SessionConflictError', code: 'CONFLICT' },
    });
    expect(kv.get('b')).toBeNull();
    const { position, chunks } = await kv.exportSnapshot();
    const restored = new KvStateMachine();
    await restored.restoreSnapshot(position, streamOf(await collectChunks(chunks)));
    const [again, retry] = await restored.apply(
      commands(3, [
        [{ op: 'put', key: 'b', value: '2' }, session],
        [{ op: 'put', key: 'a', value: '1' }, session],
      ]),
    );
    expect(again).toMatchObject({ error: { name: 'SessionConflictError' } });
    expect(retry).toEqual(first);
  });

  it('answers SessionExpiredError for a command of an expired session, without executing it', async () => {
    const kv = new KvStateMachine();
    await kv.apply(
      commands(1, [
        [
          { op: 'put', key: 'k', value: 'a' },
          { clientId: 'c', seq: 1 },
        ],
      ]),
    );
    const [late] = await kv.apply(
      commands(
        2,
        [
          [
            { op: 'put', key: 'k', value: 'b' },
            { clientId: 'c', seq: 2 },
          ],
        ],
        T0 + HOUR + 1,
      ),
    );
    expect(late).toMatchObject({ status: 'error', error: { name: 'SessionExpiredError' } });
    expect(kv.get('k')).toBe('a');
  });

  it('answers SessionExpiredError for a command older than the results it keeps', async () => {
    const kv = new KvStateMachine({ sessions: { retainPerClient: 2 } });
    const puts = [1, 2, 3].map((seq): [KvCommand, ClientSession] => [
      { op: 'put', key: 'k', value: `${seq}` },
      { clientId: 'c', seq },
    ]);
    await kv.apply(commands(1, puts));
    const [retryOfFirst, retryOfLast] = await kv.apply(commands(4, [puts[0]!, puts[2]!]));
    expect(retryOfFirst).toMatchObject({ status: 'error', error: { name: 'SessionExpiredError' } });
    expect(retryOfLast).toEqual({ status: 'ok', value: { op: 'put', value: '3' } });
    expect(kv.get('k')).toBe('3');
  });

  it('answers a malformed command with an error result, the same on every replica', async () => {
    const kv = new KvStateMachine();
    const [result] = await kv.apply(
      commands(1, [{ op: 'delete', key: 'k' } as unknown as KvCommand]),
    );
    expect(result).toMatchObject({ status: 'error', error: { name: 'UnknownCommandError' } });
    expect(await kv.lastApplied()).toEqual({ index: 1, term: 1 });
  });

  it('exports the state as of the call, in chunks, even while entries keep applying', async () => {
    const kv = new KvStateMachine({ chunkBytes: 1024 });
    const big = 'v'.repeat(3000);
    await kv.apply(
      commands(1, [
        [
          { op: 'append', key: 'big', value: big },
          { clientId: 'c', seq: 1 },
        ],
        { op: 'put', key: 'é', value: '✓' },
      ]),
    );
    const exported = await kv.exportSnapshot();
    await kv.apply(commands(3, [{ op: 'put', key: 'after', value: 'snapshot' }]));
    expect(exported.position).toEqual({ index: 2, term: 1 });
    const chunks = await collectChunks(exported.chunks);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.slice(0, -1).every((chunk) => chunk.byteLength === 1024)).toBe(true);

    const restored = new KvStateMachine();
    await restored.restoreSnapshot(exported.position, streamOf(chunks));
    expect(await restored.lastApplied()).toEqual({ index: 2, term: 1 });
    expect(restored.get('big')).toBe(big);
    expect(restored.get('é')).toBe('✓');
    expect(restored.get('after')).toBeNull();
    // The sessions came along: a retry of seq 1 is answered, not executed.
    const [retry] = await restored.apply(
      commands(3, [
        [
          { op: 'append', key: 'big', value: big },
          { clientId: 'c', seq: 1 },
        ],
      ]),
    );
    expect(retry).toEqual({ status: 'ok', value: { op: 'append', value: big } });
    expect(restored.get('big')).toBe(big);
  });

  it('replaces the whole state on restore, or nothing if the snapshot is not its own', async () => {
    const kv = new KvStateMachine();
    await kv.apply(commands(1, [{ op: 'put', key: 'old', value: '1' }]));
    const source = new KvStateMachine();
    await source.apply(commands(1, [{ op: 'put', key: 'new', value: '2' }]));
    const { chunks } = await source.exportSnapshot();
    await kv.restoreSnapshot({ index: 10, term: 3 }, chunks);
    expect(kv.get('old')).toBeNull();
    expect(kv.get('new')).toBe('2');
    expect(await kv.lastApplied()).toEqual({ index: 10, term: 3 });

    const garbage = streamOf([new TextEncoder().encode('{"something":"else"}')]);
    await expect(kv.restoreSnapshot({ index: 20, term: 3 }, garbage)).rejects.toThrow(TypeError);
    expect(await kv.lastApplied()).toEqual({ index: 10, term: 3 });
    expect(kv.get('new')).toBe('2');
  });

  it('takes applyDelayMs to apply a batch, and an abort meanwhile applies nothing', async () => {
    const kv = new KvStateMachine({ applyDelayMs: 20 });
    const started = performance.now();
    await kv.apply(commands(1, [{ op: 'put', key: 'k', value: '1' }]));
    expect(performance.now() - started).toBeGreaterThanOrEqual(15);
    const controller = new AbortController();
    const pending = kv.apply(commands(2, [{ op: 'put', key: 'k', value: '2' }]), {
      signal: controller.signal,
    });
    controller.abort(new Error('stopping'));
    await expect(pending).rejects.toThrow('stopping');
    expect(kv.get('k')).toBe('1');
    expect(await kv.lastApplied()).toEqual({ index: 1, term: 1 });
  });
});
