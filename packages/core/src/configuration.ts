import type { NodeId } from './log-entry.ts';

/**
 * Cluster membership, as the log carries it (Raft paper 6). `voters` decide elections and
 * commitment by majority. During a joint configuration C_old,new `outgoingVoters` holds C_old and
 * is non-empty: every decision then needs a majority of both sets. `learners` receive the log and
 * snapshots but never vote and never count toward a quorum; a learner may also be an outgoing
 * voter (a voter being demoted: it votes until the joint configuration is left). `autoPromote`
 * lists the learners the leader turns into voters, one at a time, once their log is within
 * `EngineTuning.promotionLagEntries` of its own. `addresses` tells transports that follow the
 * configuration where members listen; the engine never reads it.
 */
export interface ClusterConfig {
  readonly voters: readonly NodeId[];
  readonly outgoingVoters?: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  readonly autoPromote?: readonly NodeId[];
  readonly addresses?: Readonly<Record<NodeId, string>>;
}

/** Every member that receives the log: voters of both halves and learners, without duplicates. */
export function members(config: ClusterConfig): NodeId[] {
  return [
    ...new Set([...config.voters, ...(config.outgoingVoters ?? []), ...(config.learners ?? [])]),
  ];
}

/** Whether `id` may vote in `config` (in either half of a joint configuration). */
export function isVoter(config: ClusterConfig, id: NodeId): boolean {
  return config.voters.includes(id) || (config.outgoingVoters ?? []).includes(id);
}

/** Whether `config` is a joint configuration C_old,new (Raft paper 6). */
export function isJoint(config: ClusterConfig): boolean {
  return (config.outgoingVoters ?? []).length > 0;
}

/** Every voter of either half, without duplicates. */
export function allVoters(config: ClusterConfig): NodeId[] {
  return [...new Set([...config.voters, ...(config.outgoingVoters ?? [])])];
}

/** Whether two configurations have the same members in the same roles (order does not matter). */
export function sameMembership(a: ClusterConfig, b: ClusterConfig): boolean {
  const same = (x: readonly NodeId[] = [], y: readonly NodeId[] = []) =>
    x.length === y.length && x.every((id) => y.includes(id));
  return (
    same(a.voters, b.voters) &&
    same(a.outgoingVoters, b.outgoingVoters) &&
    same(a.learners, b.learners) &&
    same(a.autoPromote, b.autoPromote)
  );
}

/** Checks a configuration for mistakes a caller can make; throws a `TypeError` that says which. */
export function validateConfig(config: ClusterConfig): void {
  if (config === null || typeof config !== 'object' || !Array.isArray(config.voters)) {
    throw new TypeError('a cluster configuration needs a `voters` array');
  }
  if (config.voters.length === 0)
    throw new TypeError('a cluster configuration needs at least one voter');
  const lists = {
    voters: config.voters,
    outgoingVoters: config.outgoingVoters ?? [],
    learners: config.learners ?? [],
    autoPromote: config.autoPromote ?? [],
  };
  for (const [name, ids] of Object.entries(lists)) {
    if (!Array.isArray(ids)) throw new TypeError(`\`${name}\` must be an array of node ids`);
    const seen = new Set<NodeId>();
    for (const id of ids) {
      if (typeof id !== 'string' || id.length === 0)
        throw new TypeError('node ids must be non-empty strings');
      if (seen.has(id)) throw new TypeError(`node id "${id}" is listed twice in \`${name}\``);
      seen.add(id);
    }
  }
  for (const id of lists.learners) {
    if (lists.voters.includes(id))
      throw new TypeError(`node id "${id}" cannot be both a voter and a learner`);
  }
  for (const id of lists.autoPromote) {
    if (!lists.learners.includes(id))
      throw new TypeError(`node id "${id}" is to be promoted but is not a learner`);
  }
  const addresses = config.addresses ?? {};
  if (addresses === null || typeof addresses !== 'object') {
    throw new TypeError('`addresses` must map node ids to addresses');
  }
  const all = members(config);
  for (const [id, address] of Object.entries(addresses)) {
    if (!all.includes(id)) throw new TypeError(`an address is given for "${id}", not a member`);
    if (typeof address !== 'string' || address.length === 0)
      throw new TypeError(`the address of "${id}" must be a non-empty string`);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The bytes of a `config` log entry: UTF-8 JSON of the configuration. */
export function encodeConfig(config: ClusterConfig): Uint8Array {
  return encoder.encode(
    JSON.stringify({
      voters: config.voters,
      ...(isJoint(config) ? { outgoingVoters: config.outgoingVoters } : {}),
      ...((config.learners ?? []).length > 0 ? { learners: config.learners } : {}),
      ...((config.autoPromote ?? []).length > 0 ? { autoPromote: config.autoPromote } : {}),
      ...(Object.keys(config.addresses ?? {}).length > 0 ? { addresses: config.addresses } : {}),
    }),
  );
}

/** Reads the configuration a `config` log entry carries; throws a `TypeError` when malformed. */
export function decodeConfig(data: Uint8Array): ClusterConfig {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch (error) {
    throw new TypeError(`a configuration entry is not UTF-8 JSON: ${String(error)}`);
  }
  const config = value as ClusterConfig;
  validateConfig(config);
  return config;
}
