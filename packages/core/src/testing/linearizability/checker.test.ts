import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type CheckResult, checkOperations } from './checker.ts';
import { type KvInput, type KvOutput, kvModel } from './kv-model.ts';
import type { Model } from './model.ts';
import { type Operation, UNKNOWN_OUTCOME } from './operation.ts';
import {
  type RegisterInput,
  type RegisterOutput,
  type RegisterValue,
  registerModel,
} from './register-model.ts';

type RegisterOperation = Operation<RegisterInput, RegisterOutput>;
type KvOperation = Operation<KvInput, KvOutput>;

const read = (
  clientId: number,
  call: number,
  ret: number,
  value: RegisterValue | null,
): RegisterOperation => ({ clientId, input: { kind: 'read' }, call, return: ret, output: value });
const write = (
  clientId: number,
  call: number,
  ret: number,
  value: RegisterValue,
): RegisterOperation => ({
  clientId,
  input: { kind: 'write', value },
  call,
  return: ret,
  output: undefined,
});
const unknownWrite = (clientId: number, call: number, value: RegisterValue): RegisterOperation => ({
  clientId,
  input: { kind: 'write', value },
  call,
  return: Infinity,
  output: UNKNOWN_OUTCOME,
});

/** Asserts the verdict, showing the checker's explanation if it is not the expected one. */
function expectVerdict<S, I, O>(
  result: CheckResult<S, I, O>,
  verdict: CheckResult<S, I, O>['verdict'],
): void {
  const explanation = result.verdict === 'ok' ? 'linearizable' : result.message;
  expect(result.verdict, explanation).toBe(verdict);
}

describe('checkOperations on hand-built register histories', () => {
  it('accepts a sequential history that follows the register specification', () => {
    const history = [write(0, 0, 1, 1), read(1, 2, 3, 1), write(1, 4, 5, 2), read(0, 6, 7, 2)];
    expectVerdict(checkOperations(registerModel, history), 'ok');
  });

  it('accepts the empty history', () => {
    expectVerdict(checkOperations(registerModel, []), 'ok');
  });

  it('rejects a stale read: a read after a completed write sees the older value', () => {
    const history = [write(0, 0, 1, 1), write(0, 2, 3, 2), read(1, 4, 5, 1)];
    const result = checkOperations(registerModel, history);
    expectVerdict(result, 'illegal');
    if (result.verdict !== 'illegal') return;
    expect(result.failure.longestPrefix).toEqual([history[0], history[1]]);
    expect(result.failure.stateAfterPrefix).toBe(2);
    expect(result.failure.blockedAt).toBe(history[2]);
    expect(result.message).toContain('read() -> 1');
    expect(result.message).toContain('state after it: 2');
  });

  it('orders overlapping operations the only way the reads allow', () => {
    // write(1) spans all the reads: it must take effect between the read of null and the read of 1.
    const history = [write(0, 0, 100, 1), read(1, 10, 20, null), read(2, 30, 40, 1)];
    expectVerdict(checkOperations(registerModel, history), 'ok');
    // Once a read has seen 1, a later read may not see null again.
    const flickering = [...history, read(3, 50, 60, null)];
    expectVerdict(checkOperations(registerModel, flickering), 'illegal');
  });

  it('orders two overlapping writes by what later reads see', () => {
    const history = [
      write(0, 0, 10, 1),
      write(1, 5, 15, 2),
      read(2, 20, 21, 2),
      read(2, 22, 23, 2),
    ];
    expectVerdict(checkOperations(registerModel, history), 'ok');
    // Reads after both writes returned may not see both values: the writes have one order.
    const torn = [write(0, 0, 10, 1), write(1, 5, 15, 2), read(2, 20, 21, 2), read(3, 22, 23, 1)];
    expectVerdict(checkOperations(registerModel, torn), 'illegal');
  });

  it('accepts a write of unknown outcome that a later read observes', () => {
    const history = [write(0, 0, 1, 1), unknownWrite(1, 2, 2), read(2, 5, 6, 2)];
    expectVerdict(checkOperations(registerModel, history), 'ok');
  });

  it('accepts a write of unknown outcome that no read observes', () => {
    const history = [write(0, 0, 1, 1), unknownWrite(1, 2, 2), read(2, 5, 6, 1), read(2, 7, 8, 1)];
    expectVerdict(checkOperations(registerModel, history), 'ok');
  });

  it('accepts a write of unknown outcome observed only long after its client gave up', () => {
    const history = [unknownWrite(1, 0, 2), read(2, 5, 6, null), read(2, 1000, 1001, 2)];
    expectVerdict(checkOperations(registerModel, history), 'ok');
  });

  it('rejects a write of unknown outcome that is observed and then undone', () => {
    const history = [write(0, 0, 1, 1), unknownWrite(1, 2, 2), read(2, 5, 6, 2), read(2, 7, 8, 1)];
    expectVerdict(checkOperations(registerModel, history), 'illegal');
  });

  it('rejects a write of unknown outcome observed before it was called', () => {
    const history = [read(2, 0, 1, 2), unknownWrite(1, 2, 2)];
    expectVerdict(checkOperations(registerModel, history), 'illegal');
  });

  it('checks compare-and-set results against the value at its linearization point', () => {
    const cas = (
      clientId: number,
      call: number,
      ret: number,
      expected: number,
      value: number,
      swapped: boolean,
    ): RegisterOperation => ({
      clientId,
      input: { kind: 'cas', expected, value },
      call,
      return: ret,
      output: swapped,
    });
    const ok = [write(0, 0, 1, 1), cas(1, 2, 10, 1, 2, true), cas(2, 3, 11, 1, 3, false)];
    expectVerdict(checkOperations(registerModel, [...ok, read(0, 12, 13, 2)]), 'ok');
    // Both compare-and-sets expected 1 and only one can have seen it.
    const bothSwap = [write(0, 0, 1, 1), cas(1, 2, 10, 1, 2, true), cas(2, 3, 11, 1, 3, true)];
    expectVerdict(checkOperations(registerModel, bothSwap), 'illegal');
  });
});

describe('checkOperations with a partitioned model', () => {
  const put = (clientId: number, call: number, ret: number, key: string, value: string) =>
    ({
      clientId,
      input: { kind: 'put', key, value },
      call,
      return: ret,
      output: undefined,
    }) as const;
  const get = (clientId: number, call: number, ret: number, key: string, value: string) =>
    ({ clientId, input: { kind: 'get', key }, call, return: ret, output: value }) as const;

  it('checks each key on its own and reports the key that fails', () => {
    const history: KvOperation[] = [
      put(0, 0, 1, 'x', 'a'),
      put(1, 0, 1, 'y', 'b'),
      get(0, 2, 3, 'x', 'a'),
      get(1, 2, 3, 'y', 'b'),
      get(2, 4, 5, 'z', ''),
    ];
    const ok = checkOperations(kvModel, history);
    expectVerdict(ok, 'ok');
    expect(ok.partitions).toBe(3);

    const stale: KvOperation[] = [...history, put(0, 6, 7, 'y', 'c'), get(1, 8, 9, 'y', 'b')];
    const result = checkOperations(kvModel, stale);
    expectVerdict(result, 'illegal');
    if (result.verdict !== 'illegal') return;
    expect(result.failure.partitionIndex).toBe(1);
    expect(result.failure.partition.every((operation) => operation.input.key === 'y')).toBe(true);
    expect(result.message).toContain('partition 2 of 3');
    expect(result.message).toContain('get("y") -> "b"');
  });

  it('checks key/value compare-and-set and append per key', () => {
    const cas = (call: number, ret: number, expected: string, value: string, swapped: boolean) =>
      ({
        clientId: call,
        input: { kind: 'cas', key: 'x', expected, value },
        call,
        return: ret,
        output: swapped,
      }) as const;
    const append = (call: number, ret: number, value: string) =>
      ({
        clientId: call,
        input: { kind: 'append', key: 'x', value },
        call,
        return: ret,
        output: undefined,
      }) as const;
    // An absent key reads as '', so a cas from '' succeeds once.
    const history: KvOperation[] = [
      cas(0, 5, '', 'a', true),
      cas(1, 5, '', 'b', false),
      append(6, 7, 'c'),
    ];
    expectVerdict(checkOperations(kvModel, [...history, get(2, 8, 9, 'x', 'ac')]), 'ok');
    expectVerdict(checkOperations(kvModel, [...history, get(2, 8, 9, 'x', 'bc')]), 'illegal');
  });

  it('throws a TypeError when an output does not fit its input (a broken harness)', () => {
    const history: KvOperation[] = [
      { clientId: 0, input: { kind: 'get', key: 'x' }, call: 0, return: 1, output: true },
    ];
    expect(() => checkOperations(kvModel, history)).toThrow(TypeError);
  });

  it('never lets one key observe another key', () => {
    // One sequential store would need x's put before y's get and y's put before x's get; per key
    // there is no such constraint (the keys are independent objects).
    const history: KvOperation[] = [
      put(0, 0, 10, 'x', '1'),
      put(1, 0, 10, 'y', '1'),
      get(0, 11, 12, 'y', '1'),
      get(1, 11, 12, 'x', '1'),
    ];
    expectVerdict(checkOperations(kvModel, history), 'ok');
  });
});

describe('checkOperations arguments and limits', () => {
  it('throws a RangeError for an operation that returns before its call', () => {
    expect(() => checkOperations(registerModel, [read(0, 5, 4, null)])).toThrow(RangeError);
  });

  it('answers unknown when the time limit runs out', () => {
    // Concurrent appends reach a different state in every order, so memoization cannot help, and
    // the impossible read forces the search through all of them.
    const history: KvOperation[] = Array.from({ length: 14 }, (_, i) => ({
      clientId: i,
      input: { kind: 'append', key: 'k', value: String.fromCharCode(97 + i) },
      call: 0,
      return: 10,
      output: undefined,
    }));
    history.push({
      clientId: 99,
      input: { kind: 'get', key: 'k' },
      call: 11,
      return: 12,
      output: 'x',
    });
    // Without the limit the search over 14! orders would outlast the test's own timeout.
    const result = checkOperations(kvModel, history, { timeoutMs: 100 });
    expect(result.verdict).toBe('unknown');
  });

  it('rejects a time limit that is not positive', () => {
    expect(() => checkOperations(registerModel, [], { timeoutMs: 0 })).toThrow(RangeError);
  });
});

// Porcupine's public test data (MIT licence), with the verdicts listed in its README.

/** Where the data lives: `TSRAFT_PORCUPINE_TESTDATA`, or the copy in `packages/core/testdata`. */
const testdataDir =
  process.env.TSRAFT_PORCUPINE_TESTDATA ??
  fileURLToPath(new URL('../../../testdata/porcupine', import.meta.url));

const linearizableEtcdLogs = new Set([
  2, 5, 7, 18, 25, 31, 38, 45, 48, 49, 51, 53, 56, 67, 75, 76, 80, 87, 92, 98, 100, 101, 102,
]);
/** etcd_095.log is empty: the cluster never started in that run. */
const emptyEtcdLog = 95;
const kvLogs = ['c01-ok', 'c01-bad', 'c10-ok', 'c10-bad', 'c50-ok', 'c50-bad'];

/** How long the checker may take on one data set before the test calls it too slow. */
const DATA_SET_TIMEOUT_MS = 20_000;

describe('checkOperations on porcupine test data', () => {
  it('finds the test data', () => {
    expect(
      existsSync(testdataDir),
      `porcupine test data not found at ${testdataDir}; set TSRAFT_PORCUPINE_TESTDATA to its directory`,
    ).toBe(true);
  });
  if (!existsSync(testdataDir)) return;

  describe('Jepsen etcd register logs', () => {
    for (let log = 0; log <= 102; log++) {
      const name = `etcd_${String(log).padStart(3, '0')}`;
      const expected = linearizableEtcdLogs.has(log) || log === emptyEtcdLog ? 'ok' : 'illegal';
      it(
        `${name} is ${expected === 'ok' ? 'linearizable' : 'not linearizable'}`,
        () => {
          const history = parseJepsenEtcdLog(
            readFileSync(join(testdataDir, 'jepsen', `${name}.log`), 'utf8'),
          );
          expect(history.length === 0).toBe(log === emptyEtcdLog);
          expectVerdict(
            checkOperations(registerModel, history, { timeoutMs: DATA_SET_TIMEOUT_MS }),
            expected,
          );
        },
        DATA_SET_TIMEOUT_MS + 5_000,
      );
    }
  });

  describe('key/value logs', () => {
    for (const name of kvLogs) {
      const expected = name.endsWith('-ok') ? 'ok' : 'illegal';
      it(
        `${name} is ${expected === 'ok' ? 'linearizable' : 'not linearizable'}`,
        () => {
          const history = parseKvLog(readFileSync(join(testdataDir, 'kv', `${name}.txt`), 'utf8'));
          expect(history.length).toBeGreaterThan(0);
          expectVerdict(
            checkOperations(kvModel, history, { timeoutMs: DATA_SET_TIMEOUT_MS }),
            expected,
          );
        },
        DATA_SET_TIMEOUT_MS + 5_000,
      );
    }
  });
});

/**
 * A completed operation, or one still waiting for its completion line. Times are line numbers:
 * the log is in real-time order, so line order is a common clock.
 */
interface Pending<Input> {
  readonly clientId: number;
  readonly input: Input;
  readonly call: number;
}

/**
 * Parses Jepsen's etcd register log: `INFO  jepsen.util - <process> :<type> :<f> <value>` with
 * `<type>` one of `invoke`, `ok`, `fail`, `info` and `<f>` one of `read` (value `nil` or a number),
 * `write` (a number), `cas` (`[expected new]`).
 *
 * - `:ok` completes the operation with its result.
 * - `:fail` means the operation definitely had no effect: it is dropped, as Jepsen's own checker
 *   does. (Porcupine instead keeps a failed cas as one that returned `false`; on this data both
 *   readings give the same verdicts, but a cas can fail for reasons other than a mismatch.)
 * - `:info` means the outcome is unknown: output `UNKNOWN_OUTCOME`, return `Infinity`. So is an
 *   invocation the log never completes.
 */
function parseJepsenEtcdLog(text: string): RegisterOperation[] {
  const linePattern =
    /^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(nil|\d+|\[\d+ \d+\]|:timed-out)$/;
  const history: RegisterOperation[] = [];
  const pending = new Map<number, Pending<RegisterInput>>();
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const match = linePattern.exec(line.trimEnd());
    if (match === null) throw new Error(`etcd log line ${index + 1} not understood: ${line}`);
    const [, processId, type, f, value] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    const clientId = Number(processId);
    if (type === 'invoke') {
      if (pending.has(clientId)) throw new Error(`line ${index + 1}: process ${clientId} is busy`);
      pending.set(clientId, { clientId, input: parseRegisterInput(f, value), call: index });
      continue;
    }
    const invocation = pending.get(clientId);
    if (invocation === undefined || invocation.input.kind !== f) {
      throw new Error(`line ${index + 1}: no pending :${f} for process ${clientId}`);
    }
    pending.delete(clientId);
    if (type === 'ok') {
      const output =
        f === 'read' ? (value === 'nil' ? null : Number(value)) : f === 'cas' ? true : undefined;
      history.push({ ...invocation, output, return: index });
    } else if (type === 'info') {
      history.push({ ...invocation, output: UNKNOWN_OUTCOME, return: Infinity });
    }
    // `:fail`: the operation did not happen, so it is left out.
  }
  for (const invocation of pending.values()) {
    history.push({ ...invocation, output: UNKNOWN_OUTCOME, return: Infinity });
  }
  return history;
}

function parseRegisterInput(f: string, value: string): RegisterInput {
  if (f === 'read') return { kind: 'read' };
  if (f === 'write') return { kind: 'write', value: Number(value) };
  const [expected, replacement] = value.slice(1, -1).split(' ').map(Number) as [number, number];
  return { kind: 'cas', expected, value: replacement };
}

/**
 * Parses porcupine's key/value logs, one EDN map a line:
 * `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}` with `:type` `:invoke` or
 * `:ok` and `:f` one of `:get` (value read on `:ok`, `""` if absent), `:put`, `:append`.
 */
function parseKvLog(text: string): KvOperation[] {
  const linePattern =
    /^\{:process (\d+), :type :(invoke|ok), :f :(get|put|append), :key "([^"]*)", :value (nil|"[^"]*")\}$/;
  const history: KvOperation[] = [];
  const pending = new Map<number, Pending<KvInput>>();
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const match = linePattern.exec(line.trimEnd());
    if (match === null) throw new Error(`kv log line ${index + 1} not understood: ${line}`);
    const [, processId, type, f, key, rawValue] = match as unknown as [
      string,
      string,
      'invoke' | 'ok',
      'get' | 'put' | 'append',
      string,
      string,
    ];
    const clientId = Number(processId);
    const value = rawValue === 'nil' ? undefined : rawValue.slice(1, -1);
    if (type === 'invoke') {
      if (pending.has(clientId)) throw new Error(`line ${index + 1}: process ${clientId} is busy`);
      const input: KvInput = f === 'get' ? { kind: f, key } : { kind: f, key, value: value ?? '' };
      pending.set(clientId, { clientId, input, call: index });
      continue;
    }
    const invocation = pending.get(clientId);
    if (invocation === undefined || invocation.input.kind !== f || invocation.input.key !== key) {
      throw new Error(`line ${index + 1}: no pending :${f} of ${key} for process ${clientId}`);
    }
    pending.delete(clientId);
    history.push({ ...invocation, output: f === 'get' ? (value ?? '') : undefined, return: index });
  }
  for (const invocation of pending.values()) {
    history.push({ ...invocation, output: UNKNOWN_OUTCOME, return: Infinity });
  }
  return history;
}

// A model outside the shipped ones, to show the checker is generic: a counter with increments
// whose reads must see the exact count.
type CounterInput = { readonly kind: 'increment' } | { readonly kind: 'read' };
const counterModel: Model<number, CounterInput, number | undefined> = {
  init: () => 0,
  step: (state, input, output) =>
    input.kind === 'increment'
      ? { ok: true, state: state + 1 }
      : { ok: typeof output !== 'number' || output === state, state },
  key: String,
};

describe('checkOperations with a custom model', () => {
  it('uses the model it is given and defaults to one partition', () => {
    const inc = (call: number, ret: number): Operation<CounterInput, number | undefined> => ({
      clientId: call,
      input: { kind: 'increment' },
      call,
      return: ret,
      output: undefined,
    });
    const readCount = (call: number, ret: number, count: number) =>
      ({ clientId: 9, input: { kind: 'read' }, call, return: ret, output: count }) as const;
    const history = [inc(0, 10), inc(1, 10), readCount(2, 3, 1), readCount(11, 12, 2)];
    const result = checkOperations(counterModel, history);
    expectVerdict(result, 'ok');
    expect(result.partitions).toBe(1);
    expectVerdict(checkOperations(counterModel, [...history, readCount(13, 14, 1)]), 'illegal');
  });
});
