import { Buffer } from 'node:buffer';
import { crc32 } from 'node:zlib';
import type { Message, PeerRequest } from '@tsraft/core';
import { describe, expect, it } from 'vitest';
import { snapshotInput } from './peer-schemas.ts';
import { peerTransformer } from './peer-wire.ts';
import {
  decodeSnapshotPiece,
  encodeSnapshotPiece,
  SNAPSHOT_PIECE_CONTENT_TYPE,
} from './snapshot-piece-wire.ts';
import { randomBytes, signedPost, TestPeers } from './test-peers.test-helpers.ts';

const PATH = '/raft/snapshot';
const message: Message & { type: 'snapshot' } = {
  type: 'snapshot',
  from: 'n1',
  to: 'n2',
  term: 4,
  snapshot: { index: 100, term: 3, config: { voters: ['n1', 'n2', 'n3'] } },
};

function piece(data: Uint8Array): PeerRequest & { type: 'snapshot' } {
  return {
    type: 'snapshot',
    message,
    chunk: { size: 10_000, sha256: 'cd'.repeat(32), offset: 4096, data, crc32: crc32(data) },
  };
}

/** The body the peer client sends for `request`. */
const body = (request: PeerRequest & { type: 'snapshot' }): Buffer =>
  Buffer.concat(encodeSnapshotPiece(request));

const binary = { headers: { 'content-type': SNAPSHOT_PIECE_CONTENT_TYPE } };

describe('snapshot pieces on the peer wire', () => {
  it('travel as their bytes after a JSON head, and decode into what was sent', () => {
    const data = randomBytes(5000);
    const request = piece(data);
    const encoded = body(request);
    // No base64: the body is the head and the bytes as they are.
    expect(encoded.byteLength).toBe(4 + encoded.readUInt32BE(0) + data.byteLength);
    expect(encoded.subarray(encoded.byteLength - data.byteLength).equals(data)).toBe(true);
    const { type: _type, ...input } = request;
    expect(snapshotInput.parse(decodeSnapshotPiece(encoded))).toEqual(input);
  });

  it("carry the sender's node identity in the head", () => {
    const identity = { clusterId: 'alpha', incarnation: 'i1', receiverIncarnation: 'i2' };
    const request = { ...piece(randomBytes(10)), identity };
    const { type: _type, ...input } = request;
    expect(snapshotInput.parse(decodeSnapshotPiece(body(request)))).toEqual(input);
  });

  it('carry an empty piece (the probe that asks what the follower holds)', () => {
    const decoded = snapshotInput.parse(decodeSnapshotPiece(body(piece(new Uint8Array(0)))));
    expect(decoded.chunk.data.byteLength).toBe(0);
    expect(decoded.chunk.offset).toBe(4096);
  });

  it('reach the handler over real HTTP with every byte', async () => {
    await using peers = await TestPeers.start({
      answer: () => Promise.resolve({ type: 'snapshot-progress', received: 4096 + 3000 }),
    });
    const data = randomBytes(3000);
    await expect(
      peers.transport('n1').request('n2', piece(data), { signal: AbortSignal.timeout(20_000) }),
    ).resolves.toEqual({ type: 'snapshot-progress', received: 7096 });
    const received = peers.received[0]?.request as PeerRequest & { type: 'snapshot' };
    expect(Buffer.from(received.chunk.data).equals(data)).toBe(true);
    expect(received.chunk.crc32).toBe(crc32(data));
  });

  const good = body(piece(randomBytes(100)));
  const head = (value: unknown): Buffer => {
    const json = Buffer.from(JSON.stringify(value));
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(json.byteLength);
    return Buffer.concat([prefix, json, Buffer.from('bytes')]);
  };
  it.each([
    [
      'a piece sent as JSON',
      JSON.stringify(peerTransformer.serialize({ message, chunk: piece(randomBytes(8)).chunk })),
      { headers: { 'content-type': 'application/json' } },
      /binary body/,
    ],
    ['a body shorter than its length prefix', Buffer.from([0, 0]), binary, /4-byte length/],
    ['a head longer than the body', good.subarray(0, 30), binary, /announces a head/],
    [
      'a head that is not JSON',
      Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}bytes')]),
      binary,
      /malformed snapshot piece/,
    ],
    [
      'a head without a checksum',
      head({ message, chunk: { size: 10, sha256: 'cd'.repeat(32), offset: 0 } }),
      binary,
      /crc32/,
    ],
    [
      'a piece from a forged sender',
      head({ message: { ...message, from: 'n3' }, chunk: piece(randomBytes(8)).chunk }),
      binary,
      /sender/,
    ],
  ])('answers 400 to %s; the handler is never reached', async (_name, sent, options, error) => {
    await using peers = await TestPeers.start();
    const answer = await signedPost(peers.url('n2'), PATH, sent, options);
    expect(answer.status).toBe(400);
    expect(
      (JSON.parse(answer.text) as { error: { json: { message: string } } }).error.json.message,
    ).toMatch(error);
    expect(peers.received).toHaveLength(0);
  });

  it('answers 401 to a piece whose bytes changed after it was signed', async () => {
    await using peers = await TestPeers.start();
    const tampered = Buffer.from(good);
    tampered[tampered.byteLength - 1] = (tampered[tampered.byteLength - 1] ?? 0) ^ 1;
    const answer = await signedPost(peers.url('n2'), PATH, tampered, {
      ...binary,
      signedBody: good,
    });
    expect(answer.status).toBe(401);
    expect(peers.received).toHaveLength(0);
  });
});
