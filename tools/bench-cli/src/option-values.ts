import { UsageError } from './usage-error.ts';

/**
 * Validators of option values: each takes the option's name as written (`--seconds`) and its text,
 * returns the value, or throws a {@link UsageError} that names the option, what it takes and the
 * text given. None has side effects.
 */

/** The bounds of a number: `above` is exclusive, `atLeast` and `atMost` inclusive. */
export interface NumberRange {
  readonly above?: number;
  readonly atLeast?: number;
  readonly atMost?: number;
}

/** Integer bounds, inclusive; `max` defaults to `Number.MAX_SAFE_INTEGER`. */
export interface IntegerRange {
  readonly min: number;
  readonly max?: number;
}

/** A number parsed from `text`, `NaN` for an empty or blank one (`Number('')` is 0). */
function toNumber(text: string): number {
  return text.trim() === '' ? Number.NaN : Number(text);
}

/** What an integer option takes, e.g. "a positive integer", "integers in [0, 1000]". */
function integerKind({ min, max }: IntegerRange, many: boolean): string {
  const kind = many ? 'integers' : 'an integer';
  if (max !== undefined) return `${kind} in [${min}, ${max}]`;
  if (min === 1) return many ? 'positive integers' : 'a positive integer';
  return `${kind} of ${min} or more`;
}

function isIntegerIn(n: number, { min, max = Number.MAX_SAFE_INTEGER }: IntegerRange): boolean {
  return Number.isSafeInteger(n) && n >= min && n <= max;
}

/** One integer in `range`, e.g. `integerOption('--rounds', '3', { min: 1 })`. */
export function integerOption(flag: string, text: string, range: IntegerRange): number {
  const n = toNumber(text);
  if (!isIntegerIn(n, range)) {
    throw new UsageError(`${flag} takes ${integerKind(range, false)}, not "${text}"`);
  }
  return n;
}

/** Integers in `range` separated by commas, e.g. `1,16,64` (at least one). */
export function integerListOption(flag: string, text: string, range: IntegerRange): number[] {
  const list = text.split(',').map(toNumber);
  if (!list.every((n) => isIntegerIn(n, range))) {
    throw new UsageError(
      `${flag} takes ${integerKind(range, true)} separated by commas, not "${text}"`,
    );
  }
  return list;
}

/** A finite number in `range` (decimals allowed), e.g. seconds. */
export function numberOption(flag: string, text: string, range: NumberRange): number {
  const n = toNumber(text);
  const { above, atLeast, atMost } = range;
  const fits =
    Number.isFinite(n) &&
    (above === undefined || n > above) &&
    (atLeast === undefined || n >= atLeast) &&
    (atMost === undefined || n <= atMost);
  if (!fits) {
    const bounds = [
      above === undefined ? undefined : `above ${above}`,
      atLeast === undefined ? undefined : `at least ${atLeast}`,
      atMost === undefined ? undefined : `at most ${atMost}`,
    ].filter((bound) => bound !== undefined);
    const kind = bounds.length === 0 ? 'a number' : `a number ${bounds.join(' and ')}`;
    throw new UsageError(`${flag} takes ${kind}, not "${text}"`);
  }
  return n;
}

/** One of `known`, e.g. `choiceOption('--start-at', text, ['follower', 'leader'])`. */
export function choiceOption<const N extends string>(
  flag: string,
  text: string,
  known: readonly N[],
): N {
  const found = known.find((name) => name === text.trim());
  if (found === undefined) {
    throw new UsageError(`${flag} takes one of ${known.join(', ')}, not "${text}"`);
  }
  return found;
}

/** Names of `known` separated by commas (at least one), in the order given. */
export function choiceListOption<const N extends string>(
  flag: string,
  text: string,
  known: readonly N[],
): N[] {
  return text.split(',').map((part) => choiceOption(flag, part, known));
}
