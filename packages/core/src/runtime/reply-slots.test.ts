import { describe, expect, it } from 'vitest';
import type { Message } from '../message.ts';
import { ReplySlots } from './reply-slots.ts';

const heartbeatResponse = (from: string, to: string, round: number): Message => ({
  type: 'heartbeat-response',
  from,
  to,
  term: 1,
  round,
  lastIndex: 0,
});

const open = new AbortController().signal;
const sendNothing = (): void => {
  throw new Error('nothing may be sent on its own here');
};

describe('ReplySlots', () => {
  it('catches the messages for a waiting peer until the Ready it waits for is carried out, and lets the others through', async () => {
    const slots = new ReplySlots();
    const answer = slots.open('n1', 3, open, sendNothing);
    const forN1 = heartbeatResponse('n2', 'n1', 1);
    const forN3 = heartbeatResponse('n2', 'n3', 1);
    expect(slots.divert([forN1, forN3])).toEqual([forN3]);
    slots.readyDone(2);
    const later = heartbeatResponse('n2', 'n1', 2);
    expect(slots.divert([later])).toEqual([]);
    slots.readyDone(3);
    await expect(answer).resolves.toEqual([forN1, later]);
    expect(slots.isEmpty).toBe(true);
    expect(slots.divert([forN1])).toEqual([forN1]);
  });

  it('puts a message into the oldest open slot of its peer', async () => {
    const slots = new ReplySlots();
    const first = slots.open('n1', 1, open, sendNothing);
    const second = slots.open('n1', 2, open, sendNothing);
    const a = heartbeatResponse('n2', 'n1', 1);
    const b = heartbeatResponse('n2', 'n1', 2);
    slots.divert([a]);
    slots.readyDone(1);
    slots.divert([b]);
    slots.readyDone(2);
    await expect(first).resolves.toEqual([a]);
    await expect(second).resolves.toEqual([b]);
  });

  it('gives what it caught back to be sent on its own when the request goes away, so no answer is lost', async () => {
    const slots = new ReplySlots();
    const request = new AbortController();
    const sentOnTheirOwn: Message[] = [];
    const answer = slots.open('n1', 5, request.signal, (messages) =>
      sentOnTheirOwn.push(...messages),
    );
    const caught = heartbeatResponse('n2', 'n1', 1);
    slots.divert([caught]);
    request.abort(new Error('the peer went away'));
    await expect(answer).resolves.toEqual([]);
    expect(sentOnTheirOwn).toEqual([caught]);
    expect(slots.isEmpty).toBe(true);
    slots.readyDone(5);
    expect(sentOnTheirOwn).toEqual([caught]);
  });

  it('settleAll closes every slot with what it holds (nothing left to carry out, or the node stopped)', async () => {
    const slots = new ReplySlots();
    const one = slots.open('n1', 9, open, sendNothing);
    const two = slots.open('n3', 9, open, sendNothing);
    const forN3 = heartbeatResponse('n2', 'n3', 4);
    slots.divert([forN3]);
    slots.settleAll();
    await expect(one).resolves.toEqual([]);
    await expect(two).resolves.toEqual([forN3]);
    expect(slots.isEmpty).toBe(true);
  });

  it('answers at once, with nothing, a request already gone', async () => {
    const slots = new ReplySlots();
    await expect(slots.open('n1', 1, AbortSignal.abort(), sendNothing)).resolves.toEqual([]);
    expect(slots.isEmpty).toBe(true);
  });
});
