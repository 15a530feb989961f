import type { Message, PeerIdentity, PeerResponse, SnapshotChunk } from '@tsraft/core';
import { z } from 'zod';
import { wireBytes } from './peer-wire.ts';

/**
 * Zod schemas of what travels between peers, as it arrives (see `peer-wire.ts`): they check
 * envelopes (message type, sender, receiver, term and index numbers, array shapes, that payloads
 * are base64) and decode payloads into `Uint8Array`s, never look into the contents of entry
 * payloads: those are the state machine's business, and checking them on the hot path would cost
 * every AppendEntries.
 */

const nodeId = z.string().min(1).max(256);
/** Terms and indexes: non-negative safe integers. */
const count = z.int().min(0);
const bytes = wireBytes;

const addressing = { from: nodeId, to: nodeId, term: count };

/** Cluster ids and incarnations: opaque strings. */
const identityString = z.string().min(1).max(256);

/** Who sends a request or a `raft` answer (`PeerIdentity`); the node checks it. */
const peerIdentity: z.ZodType<PeerIdentity, unknown> = z.object({
  clusterId: identityString.nullable(),
  incarnation: identityString,
  receiverIncarnation: identityString.nullable(),
  members: z.record(nodeId, identityString).optional(),
  membersAsOf: count.optional(),
});

const logEntry = z.object({
  index: z.int().min(1),
  term: count,
  type: z.enum(['command', 'noop', 'config']),
  data: bytes,
});

const clusterConfig = z.object({
  voters: z.array(nodeId).min(1),
  outgoingVoters: z.array(nodeId).optional(),
  learners: z.array(nodeId).optional(),
  autoPromote: z.array(nodeId).optional(),
  addresses: z.record(nodeId, z.string().min(1).max(2048)).optional(),
});

const installSnapshot = z.object({
  type: z.literal('snapshot'),
  ...addressing,
  snapshot: z.object({ index: count, term: count, config: clusterConfig }),
});

const message = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('append'),
    ...addressing,
    prevIndex: count,
    prevTerm: count,
    entries: z.array(logEntry),
    commit: count,
  }),
  z.object({
    type: z.literal('append-response'),
    ...addressing,
    success: z.boolean(),
    index: count,
    hint: z.object({ index: count, term: count }).optional(),
  }),
  z.object({
    type: z.literal('vote'),
    ...addressing,
    prevote: z.boolean(),
    lastIndex: count,
    lastTerm: count,
    transfer: z.boolean().optional(),
  }),
  z.object({
    type: z.literal('vote-response'),
    ...addressing,
    prevote: z.boolean(),
    granted: z.boolean(),
  }),
  z.object({ type: z.literal('heartbeat'), ...addressing, commit: count, round: count }),
  z.object({
    type: z.literal('heartbeat-response'),
    ...addressing,
    round: count,
    lastIndex: count,
  }),
  installSnapshot,
  z.object({ type: z.literal('snapshot-response'), ...addressing, index: count }),
  z.object({ type: z.literal('read-index'), ...addressing, id: z.string().max(1024) }),
  z.object({
    type: z.literal('read-index-response'),
    ...addressing,
    id: z.string().max(1024),
    index: count.nullable(),
  }),
  z.object({ type: z.literal('timeout-now'), ...addressing }),
]);

/**
 * Input of the `raft` procedure: a batch of protocol messages, and whether the sender takes the
 * peer's answers in the response.
 */
export const raftInput: z.ZodType<
  { messages: Message[]; reply?: boolean; identity?: PeerIdentity },
  unknown
> = z.object({
  messages: z.array(message),
  reply: z.boolean().optional(),
  identity: peerIdentity.optional(),
});

/** Input of the `propose` procedure: an encoded command envelope a follower forwards. */
export const proposeInput: z.ZodType<{ envelope: Uint8Array; identity?: PeerIdentity }, unknown> =
  z.object({ envelope: bytes, identity: peerIdentity.optional() });

/**
 * Input of the `snapshot` procedure: an InstallSnapshot message and one piece of its bytes, as
 * `decodeSnapshotPiece` (`snapshot-piece-wire.ts`) reads it from a binary body: the bytes are
 * already a `Uint8Array`.
 */
export const snapshotInput: z.ZodType<
  { message: Message & { type: 'snapshot' }; chunk: SnapshotChunk; identity?: PeerIdentity },
  unknown
> = z.object({
  message: installSnapshot,
  identity: peerIdentity.optional(),
  chunk: z.object({
    size: count,
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 in lower-case hex'),
    offset: count,
    data: z.instanceof(Uint8Array, { error: 'a snapshot piece travels in a binary body' }),
    crc32: z.int().min(0).max(0xffff_ffff),
  }),
});

/** What a peer may answer; the client checks every answer against it. */
export const peerResponse: z.ZodType<PeerResponse, unknown> = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ack') }),
  z.object({
    type: z.literal('raft'),
    messages: z.array(message),
    identity: peerIdentity.optional(),
  }),
  z.object({
    type: z.literal('proposed'),
    result: bytes,
    index: z.int().min(1),
    term: z.int().min(1),
  }),
  z.object({ type: z.literal('snapshot-progress'), received: count }),
  z.object({
    type: z.literal('rejected'),
    reason: z.enum(['not-leader', 'backpressure', 'dropped', 'closed', 'timeout', 'refused']),
    leaderHint: nodeId.nullable().optional(),
    message: z.string(),
  }),
]);
