/** The signal one replicated mutation waits with; dispose it once the proposal settled. */
export interface ProposalDeadline extends Disposable {
  readonly signal: AbortSignal;
  /** Whether the deadline (not the request) aborted the signal. */
  readonly timedOut: boolean;
}

/**
 * A signal that aborts when `request` does (with its reason), or once `timeoutMs` passed (with a
 * `TimeoutError` DOMException, as `AbortSignal.timeout` does). The same as
 * `AbortSignal.any([request, AbortSignal.timeout(ms)])`, for a fraction of its cost per request:
 * one controller, one listener and one timer, all released by disposing it, where the composite
 * signal keeps weak references that each request leaves to the garbage collector. The timer does
 * not keep the process alive.
 */
export function proposalDeadline(
  request: AbortSignal | undefined,
  timeoutMs: number,
): ProposalDeadline {
  const controller = new AbortController();
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onRequestAbort = (): void => {
    clearTimeout(timer);
    controller.abort(request?.reason);
  };
  if (request?.aborted === true) {
    controller.abort(request.reason);
  } else {
    request?.addEventListener('abort', onRequestAbort, { once: true });
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new DOMException(`the deadline of ${timeoutMs} ms passed`, 'TimeoutError'));
    }, timeoutMs);
    timer.unref?.();
  }
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    [Symbol.dispose]() {
      clearTimeout(timer);
      request?.removeEventListener('abort', onRequestAbort);
    },
  };
}
