import { describe, expect, it } from 'vitest';
import { proposalDeadline } from './proposal-deadline.ts';

describe('proposalDeadline: the signal a replicated mutation waits with', () => {
  it("aborts with the request's reason when the request is aborted, not as a timeout", () => {
    const request = new AbortController();
    using deadline = proposalDeadline(request.signal, 60_000);
    expect(deadline.signal.aborted).toBe(false);
    const reason = new Error('the client went away');
    request.abort(reason);
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toBe(reason);
    expect(deadline.timedOut).toBe(false);
  });

  it('aborts at once for a request that was already aborted', () => {
    const request = new AbortController();
    request.abort('gone');
    using deadline = proposalDeadline(request.signal, 60_000);
    expect(deadline.signal.aborted).toBe(true);
    expect(deadline.signal.reason).toBe('gone');
    expect(deadline.timedOut).toBe(false);
  });

  it('aborts with a TimeoutError once the deadline passes, with or without a request signal', async () => {
    for (const request of [new AbortController().signal, undefined]) {
      using deadline = proposalDeadline(request, 20);
      await new Promise((resolve) => deadline.signal.addEventListener('abort', resolve));
      expect(deadline.timedOut).toBe(true);
      expect((deadline.signal.reason as DOMException).name).toBe('TimeoutError');
      expect(request?.aborted ?? false).toBe(false);
    }
  });

  it('once disposed, neither the request nor the deadline aborts it', async () => {
    const request = new AbortController();
    const deadline = proposalDeadline(request.signal, 20);
    deadline[Symbol.dispose]();
    request.abort();
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(deadline.signal.aborted).toBe(false);
    expect(deadline.timedOut).toBe(false);
  });

  it('does not count as timed out when the request aborted first and the deadline then passed', async () => {
    const request = new AbortController();
    using deadline = proposalDeadline(request.signal, 20);
    request.abort(new Error('the client went away'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(deadline.timedOut).toBe(false);
    expect(deadline.signal.reason).toEqual(new Error('the client went away'));
  });
});
