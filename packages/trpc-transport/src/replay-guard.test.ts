import { describe, expect, it } from 'vitest';
import { ReplayGuard } from './replay-guard.ts';

const STREAM = 'AAAAAAAAAAAAAAAAAAAAAA';
const OTHER = 'BBBBBBBBBBBBBBBBBBBBBB';
const SKEW = 60_000;
const T = 1_700_000_000_000;

describe('ReplayGuard: each signed request accepted once within the clock-skew window', () => {
  it('refuses a nonce seen before, per sender and stream', () => {
    const guard = new ReplayGuard(SKEW);
    expect(guard.accept('n1', `${STREAM}.1`, { signedAt: T, now: T })).toBe('ok');
    expect(guard.accept('n1', `${STREAM}.1`, { signedAt: T, now: T + 10 })).toBe('replay');
    // The same counter of another stream, or of another sender, is another request.
    expect(guard.accept('n1', `${OTHER}.1`, { signedAt: T, now: T })).toBe('ok');
    expect(guard.accept('n2', `${STREAM}.1`, { signedAt: T, now: T })).toBe('ok');
  });

  it('accepts a skipped counter once, and forgets it once no request of its time could pass the skew check', () => {
    const guard = new ReplayGuard(SKEW);
    expect(guard.accept('n1', `${STREAM}.5`, { signedAt: T, now: T })).toBe('ok');
    expect(guard.accept('n1', `${STREAM}.3`, { signedAt: T, now: T + 1 })).toBe('ok');
    expect(guard.accept('n1', `${STREAM}.3`, { signedAt: T, now: T + 2 })).toBe('replay');
    expect(guard.size).toEqual({ streams: 1, holes: 3 });
    expect(guard.accept('n1', `${STREAM}.10`, { signedAt: T + SKEW, now: T + SKEW })).toBe('ok');
    expect(guard.size.holes).toBe(7);
    // 1, 2 and 4 were skipped by a request signed at T: past T + skew none of them could be valid.
    const later = T + SKEW + 2000;
    expect(guard.accept('n1', `${STREAM}.11`, { signedAt: later, now: later })).toBe('ok');
    expect(guard.size).toEqual({ streams: 1, holes: 4 });
    expect(guard.accept('n1', `${STREAM}.7`, { signedAt: T + SKEW, now: later })).toBe('ok');
  });

  it('forgets streams once the window has passed, so memory stays bounded', () => {
    const guard = new ReplayGuard(SKEW);
    for (let sender = 0; sender < 100; sender++) {
      expect(guard.accept(`n${sender}`, `${STREAM}.10`, { signedAt: T, now: T })).toBe('ok');
    }
    expect(guard.size).toEqual({ streams: 100, holes: 900 });
    expect(guard.accept('n1', `${OTHER}.1`, { signedAt: T + 2 * SKEW, now: T + 2 * SKEW })).toBe(
      'ok',
    );
    expect(guard.size).toEqual({ streams: 1, holes: 0 });
  });

  it('refuses malformed nonces', () => {
    const guard = new ReplayGuard(SKEW);
    for (const nonce of ['', 'x.1', `${STREAM}.0`, `${STREAM}.-1`, `${STREAM}.1.2`, `${STREAM}`]) {
      expect(guard.accept('n1', nonce, { signedAt: T, now: T })).toBe('malformed');
    }
  });
});
