import type { NodeId } from './log-entry.ts';
import type { RandomSource } from './random.ts';

/**
 * A node's durable identity (core README, "Node identity"), kept in its log store beside the hard
 * state so that it survives every restart and vanishes exactly when the node's storage does.
 *
 * - `clusterId` names the cluster the node belongs to: given when the cluster is bootstrapped
 *   (`RaftNodeOptions.clusterId`), learned by a joiner from its peers; `null` while unknown.
 * - `incarnation` is made once, the first time the node's storage is initialized. A node that
 *   comes back with another incarnation lost its durable state (its term, its vote, its log) and
 *   must not take part as before: it may vote a second time in a term (Raft paper 5.2).
 * - `members` is the incarnation this node knows for each other member, learned on first contact
 *   (trust on first use) or from the leader, and forgotten when the member leaves the
 *   configuration (so that it can be added again with a new incarnation).
 * - `retired` lists the incarnations of members forgotten on their removal (the latest
 *   {@link MAX_RETIRED}): they are not learned again, so that a message that arrives late from
 *   before a removal cannot pin a member's old incarnation. Absent when empty.
 */
export interface NodeIdentity {
  readonly clusterId: string | null;
  readonly incarnation: string;
  readonly members: Readonly<Record<NodeId, string>>;
  readonly retired?: readonly string[];
}

/** Retired incarnations a node keeps at most (the oldest go first). */
export const MAX_RETIRED = 64;

/**
 * A new incarnation: 128 random bits, as 32 hex digits. With `random`, drawn from it (the
 * simulator's seeded generators keep runs replayable); otherwise from `crypto`.
 */
export function newIncarnation(random?: RandomSource): string {
  if (random === undefined) return globalThis.crypto.randomUUID().replaceAll('-', '');
  let hex = '';
  for (let i = 0; i < 4; i++) {
    hex += Math.floor(random.next() * 2 ** 32)
      .toString(16)
      .padStart(8, '0');
  }
  return hex;
}

/**
 * Checks a node identity read back from storage or given by a caller; throws a `TypeError` that
 * says what is wrong. Returns a copy, its keys in a fixed order (a database may reorder them).
 */
export function validateNodeIdentity(value: unknown): NodeIdentity {
  if (value === null || typeof value !== 'object') {
    throw new TypeError('a node identity must be an object');
  }
  const { clusterId, incarnation, members } = value as Record<string, unknown>;
  if (clusterId !== null && (typeof clusterId !== 'string' || clusterId.length === 0)) {
    throw new TypeError('a node identity needs a non-empty string `clusterId` or null');
  }
  if (typeof incarnation !== 'string' || incarnation.length === 0) {
    throw new TypeError('a node identity needs a non-empty string `incarnation`');
  }
  if (members === null || typeof members !== 'object' || Array.isArray(members)) {
    throw new TypeError('a node identity needs `members`, mapping node ids to incarnations');
  }
  for (const [id, known] of Object.entries(members)) {
    if (typeof known !== 'string' || known.length === 0) {
      throw new TypeError(`the incarnation known for member "${id}" must be a non-empty string`);
    }
  }
  const { retired } = value as Record<string, unknown>;
  if (
    retired !== undefined &&
    !(Array.isArray(retired) && retired.every((r) => typeof r === 'string' && r.length > 0))
  ) {
    throw new TypeError('`retired` must be an array of incarnations (non-empty strings)');
  }
  return {
    clusterId: clusterId as string | null,
    incarnation,
    members: Object.fromEntries(Object.entries(members as Record<NodeId, string>)),
    ...(retired === undefined || retired.length === 0 ? {} : { retired: [...retired] }),
  };
}
