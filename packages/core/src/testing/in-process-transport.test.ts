import { describe, expect, it } from 'vitest';
import type { Message } from '../message.ts';
import type { PeerRequest, PeerResponse } from '../transport.ts';
import { InProcessNetwork, UnreachableError } from './in-process-transport.ts';

const heartbeat: Message = { type: 'heartbeat', from: 'a', to: 'b', term: 1, commit: 0, round: 0 };
const raft: PeerRequest = { type: 'raft', messages: [heartbeat] };
const ack: PeerResponse = { type: 'ack' };
const options = (): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(1000) });

describe('InProcessNetwork', () => {
  it('delivers a request asynchronously and returns the answer', async () => {
    const network = new InProcessNetwork();
    const a = network.transport('a');
    const b = network.transport('b');
    const seen: string[] = [];
    b.listen(async (from, request) => {
      seen.push(`${from}:${request.type}`);
      return ack;
    });
    const response = a.request('b', raft, options());
    expect(seen).toEqual([]); // not delivered synchronously
    await expect(response).resolves.toEqual(ack);
    expect(seen).toEqual(['a:raft']);
  });

  it('never shares a Uint8Array between nodes', async () => {
    const network = new InProcessNetwork();
    const a = network.transport('a');
    const b = network.transport('b');
    const envelope = new Uint8Array([1, 2, 3]);
    let received: Uint8Array | undefined;
    b.listen(async (_from, request) => {
      if (request.type === 'propose') received = request.envelope;
      return { type: 'proposed', result: new Uint8Array([9]), index: 4, term: 2 };
    });
    const response = await a.request('b', { type: 'propose', envelope }, options());
    envelope[0] = 42;
    expect(received).toEqual(new Uint8Array([1, 2, 3]));
    expect(response).toEqual({ type: 'proposed', result: new Uint8Array([9]), index: 4, term: 2 });
  });

  it('rejects requests to a node that is unknown, closed, partitioned or behind a dropped link', async () => {
    const network = new InProcessNetwork();
    const a = network.transport('a');
    const b = network.transport('b');
    const c = network.transport('c');
    b.listen(async () => ack);
    c.listen(async () => ack);
    await expect(a.request('x', raft, options())).rejects.toBeInstanceOf(UnreachableError);

    network.partition('b');
    await expect(a.request('b', raft, options())).rejects.toBeInstanceOf(UnreachableError);
    await expect(b.request('c', raft, options())).rejects.toBeInstanceOf(UnreachableError);
    network.heal('b');
    await expect(a.request('b', raft, options())).resolves.toEqual(ack);

    network.drop('a', 'c');
    await expect(a.request('c', raft, options())).rejects.toBeInstanceOf(UnreachableError);
    await expect(a.request('b', raft, options())).resolves.toEqual(ack);
    network.restore('a', 'c');
    await expect(a.request('c', raft, options())).resolves.toEqual(ack);

    await c.close();
    await expect(a.request('c', raft, options())).rejects.toBeInstanceOf(UnreachableError);
    await expect(c.request('b', raft, options())).rejects.toBeInstanceOf(UnreachableError);
  });

  it('loses the answer when the link breaks while the peer handles the request', async () => {
    const network = new InProcessNetwork();
    const a = network.transport('a');
    const b = network.transport('b');
    b.listen(async () => {
      network.partition('a');
      return ack;
    });
    await expect(a.request('b', raft, options())).rejects.toBeInstanceOf(UnreachableError);
  });

  it('honours the abort signal while the peer is slow', async () => {
    const network = new InProcessNetwork({ latencyMs: 1 });
    const a = network.transport('a');
    const b = network.transport('b');
    b.listen(() => new Promise<PeerResponse>(() => {}));
    const controller = new AbortController();
    const response = a.request('b', raft, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('deadline')), 10);
    await expect(response).rejects.toThrow('deadline');
  });

  it('lets a restarted node take over its id', async () => {
    const network = new InProcessNetwork();
    const a = network.transport('a');
    const old = network.transport('b');
    old.listen(async () => ({ type: 'rejected', reason: 'closed', message: 'old' }));
    const fresh = network.transport('b');
    fresh.listen(async () => ack);
    await old.close(); // closing the old incarnation does not detach the new one
    await expect(a.request('b', raft, options())).resolves.toEqual(ack);
  });
});
