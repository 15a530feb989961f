import { describe, expect, it } from 'vitest';
import {
  choiceListOption,
  choiceOption,
  integerListOption,
  integerOption,
  numberOption,
} from './option-values.ts';
import { UsageError } from './usage-error.ts';

function refusal(read: () => unknown): string {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  throw new Error('the value was accepted');
}

describe('integerOption', () => {
  it('takes an integer in its range', () => {
    expect(integerOption('--rounds', '3', { min: 1 })).toBe(3);
    expect(integerOption('--seed', '0', { min: 0 })).toBe(0);
    expect(integerOption('--nodes', '9', { min: 1, max: 9 })).toBe(9);
  });

  it('refuses a fraction, a word, an empty text, and a value out of range, naming the option', () => {
    for (const text of ['1.5', 'x', '', ' ', '0', '-1', '1e400']) {
      expect(refusal(() => integerOption('--rounds', text, { min: 1 }))).toBe(
        `--rounds takes a positive integer, not "${text}"`,
      );
    }
    expect(refusal(() => integerOption('--nodes', '10', { min: 1, max: 9 }))).toBe(
      '--nodes takes an integer in [1, 9], not "10"',
    );
    expect(refusal(() => integerOption('--from', '-1', { min: 0 }))).toBe(
      '--from takes an integer of 0 or more, not "-1"',
    );
    // Number('') and Number(' ') are 0: an empty value is refused, not read as 0.
    for (const text of ['', ' ']) {
      expect(refusal(() => integerOption('--from', text, { min: 0 }))).toBe(
        `--from takes an integer of 0 or more, not "${text}"`,
      );
    }
    expect(refusal(() => integerListOption('--persist-ms', '2,', { min: 0 }))).toBe(
      '--persist-ms takes integers of 0 or more separated by commas, not "2,"',
    );
  });
});

describe('integerListOption', () => {
  it('takes integers separated by commas, in order', () => {
    expect(integerListOption('--inflight', '1,64,16', { min: 1 })).toEqual([1, 64, 16]);
    expect(integerListOption('--persist-ms', '0, 2', { min: 0, max: 1000 })).toEqual([0, 2]);
  });

  it('refuses the list when one member is not such an integer', () => {
    for (const text of ['1,,64', '1,x', '0,1', '', '1,']) {
      expect(refusal(() => integerListOption('--inflight', text, { min: 1 }))).toBe(
        `--inflight takes positive integers separated by commas, not "${text}"`,
      );
    }
    expect(refusal(() => integerListOption('--persist-ms', '5,1001', { min: 0, max: 1000 }))).toBe(
      '--persist-ms takes integers in [0, 1000] separated by commas, not "5,1001"',
    );
  });
});

describe('numberOption', () => {
  it('takes a number within its bounds, decimals included', () => {
    expect(numberOption('--seconds', '0.5', { above: 0, atMost: 600 })).toBe(0.5);
    expect(numberOption('--seconds', '600', { above: 0, atMost: 600 })).toBe(600);
    expect(numberOption('--warmup', '0', { atLeast: 0 })).toBe(0);
  });

  it('refuses a number at an exclusive bound, past an inclusive one, or no number at all', () => {
    const seconds = (text: string) => numberOption('--seconds', text, { above: 0, atMost: 600 });
    for (const text of ['0', '600.5', 'x', '', 'Infinity', 'NaN']) {
      expect(refusal(() => seconds(text))).toBe(
        `--seconds takes a number above 0 and at most 600, not "${text}"`,
      );
    }
    expect(refusal(() => numberOption('--warmup', '-1', { atLeast: 0 }))).toBe(
      '--warmup takes a number at least 0, not "-1"',
    );
  });
});

describe('choiceOption and choiceListOption', () => {
  const systems = ['tsraft', 'postgres', 'etcd'] as const;

  it('take known names, a list in the order given', () => {
    expect(choiceOption('--start-at', 'leader', ['follower', 'leader'])).toBe('leader');
    expect(choiceListOption('--systems', 'etcd, tsraft', systems)).toEqual(['etcd', 'tsraft']);
  });

  it('refuse an unknown name, listing the known ones', () => {
    expect(refusal(() => choiceOption('--start-at', 'middle', ['follower', 'leader']))).toBe(
      '--start-at takes one of follower, leader, not "middle"',
    );
    expect(refusal(() => choiceListOption('--systems', 'tsraft,mysql', systems))).toBe(
      '--systems takes one of tsraft, postgres, etcd, not "mysql"',
    );
    expect(refusal(() => choiceListOption('--systems', '', systems))).toBe(
      '--systems takes one of tsraft, postgres, etcd, not ""',
    );
  });
});
