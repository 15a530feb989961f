import { type ClusterConfig, members } from '../configuration.ts';
import type { NodeId } from '../log-entry.ts';
import type { Logger } from '../logger.ts';
import { MAX_RETIRED, type NodeIdentity } from '../node-identity.ts';
import type { PeerIdentity } from '../transport.ts';

/**
 * Why a peer's request or answer was refused:
 * - `other-cluster`: the peer belongs to another cluster;
 * - `peer-lost-state`: the peer comes back with another incarnation than the one this node knows
 *   for it: its storage was lost or replaced;
 * - `lost-state`: the peer knows this node under another incarnation: this node's storage was
 *   lost or replaced.
 */
export type IdentityRefusal = 'other-cluster' | 'peer-lost-state' | 'lost-state';

/** What {@link IdentityGate.admit} decides. */
export type Admission = { readonly ok: true } | { readonly ok: false; readonly message: string };

/** What the gate needs from its node. */
export interface IdentityGateOptions {
  readonly id: NodeId;
  /** The identity the node loaded (or made) at its start. */
  readonly identity: NodeIdentity;
  readonly logger: Logger;
  /**
   * The node's applied index. A leader sends it with its view of the members (`membersAsOf`):
   * the view reflects every configuration up to it, each forgotten member's removal included.
   */
  readonly applied: () => number;
  /**
   * A refusal, by this node (`reason` says why) or by a peer of this node (`refused-by-peer`):
   * reported once per peer, reason and pair of incarnations.
   */
  readonly refused: (event: {
    readonly peer: NodeId;
    readonly reason: IdentityRefusal | 'refused-by-peer';
    readonly message: string;
  }) => void;
}

/**
 * Checks who sends every peer request and `raft` answer before the node steps anything from it
 * (core README, "Node identity"), and keeps the node's identity up to date: the cluster id a
 * joiner learns, and the incarnation of each member, learned on first contact (trust on first
 * use) or from the leader (filling in what this node does not know), forgotten once the
 * member's removal is committed.
 *
 * Refused: a peer of another cluster; a member whose incarnation is not the one known for it (it
 * lost its durable state: its votes and acknowledgements must not count, Raft paper 5.2 and
 * 5.4); a peer that knows this node under another incarnation (this node lost its state). Once a
 * peer has said so, this node grants no vote (`lostState`) until a peer addresses it under its
 * current incarnation, which a cluster does once the node was removed and added again.
 *
 * Changes to the identity are handed to the consensus loop ({@link takeChanged}), which persists
 * them with its next write; one lost in a crash is learned again.
 */
export class IdentityGate {
  readonly #o: IdentityGateOptions;
  #identity: NodeIdentity;
  #changed = false;
  #lostState = false;
  /**
   * Applied index as of which `members` follows the committed configurations (see
   * {@link retain}): that of the latest configuration entry applied, or of an installed snapshot.
   */
  #membersAsOf = 0;
  /** The latest view of the members admitted from a leader, with its applied index. */
  #leaderView: { readonly members: Readonly<Record<NodeId, string>>; readonly asOf: number } = {
    members: {},
    asOf: 0,
  };
  /** Peers refused since they last passed, with why. */
  readonly #refusedPeers = new Map<NodeId, IdentityRefusal>();
  /** Refusals already reported (peer, reason, incarnations): each is logged once. */
  readonly #reported = new Set<string>();

  constructor(options: IdentityGateOptions) {
    this.#o = options;
    this.#identity = options.identity;
  }

  get identity(): NodeIdentity {
    return this.#identity;
  }

  /** A peer said this node lost its durable state, and none has accepted it since. */
  get lostState(): boolean {
    return this.#lostState;
  }

  /** Peers whose requests or answers this node refused since they last passed, with why. */
  refusedPeers(): Record<NodeId, IdentityRefusal> {
    return Object.fromEntries(this.#refusedPeers);
  }

  /** The identity to send with a request or answer to `to`; a leader adds what it knows of all. */
  outgoing(to: NodeId, leader: boolean): PeerIdentity {
    const { clusterId, incarnation, members: known } = this.#identity;
    return {
      clusterId,
      incarnation,
      receiverIncarnation: known[to] ?? null,
      ...(leader ? { members: known, membersAsOf: this.#o.applied() } : {}),
    };
  }

  /**
   * Checks what `from` says of itself. Without an identity (a sender of an earlier version, or a
   * test's hand-made request) nothing is checked. An admitted identity teaches this node what it
   * did not know: the peer's incarnation, the cluster id, and the leader's view of the members.
   */
  admit(from: NodeId, identity: PeerIdentity | undefined): Admission {
    if (identity === undefined) return { ok: true };
    const own = this.#identity;
    if (
      own.clusterId !== null &&
      identity.clusterId !== null &&
      identity.clusterId !== own.clusterId
    ) {
      return this.#refuse(
        from,
        'other-cluster',
        `node ${from} belongs to cluster ${identity.clusterId}, this node to cluster ${own.clusterId}: check the addresses each node has of its peers`,
        `${identity.clusterId}`,
      );
    }
    if (identity.receiverIncarnation !== null && identity.receiverIncarnation !== own.incarnation) {
      this.#lostState = true;
      return this.#refuse(
        from,
        'lost-state',
        `node ${this.#o.id} (this node) lost its durable state (incarnation ${identity.receiverIncarnation} -> ${own.incarnation}), as node ${from} knows it: it takes no part until it is removed from the cluster and added again (on the leader: removeNode('${this.#o.id}'), then addLearner('${this.#o.id}', { promote: true }))`,
        `${identity.receiverIncarnation}>${own.incarnation}`,
      );
    }
    const known = own.members[from];
    if (known !== undefined && known !== identity.incarnation) {
      return this.#refuse(
        from,
        'peer-lost-state',
        `node ${from} lost its durable state (incarnation ${known} -> ${identity.incarnation}): remove it from the cluster and add it again (on the leader: removeNode('${from}'), then addLearner('${from}', { promote: true })); until then its votes and acknowledgements do not count`,
        `${known}>${identity.incarnation}`,
      );
    }
    this.#refusedPeers.delete(from);
    if (identity.receiverIncarnation === own.incarnation) this.#lostState = false;
    this.#learn(from, identity);
    return { ok: true };
  }

  /** `peer` answered a request of this node with a refusal of its identity. */
  refusedBy(peer: NodeId, message: string): void {
    const key = `by:${peer}:${message}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    this.#o.logger.error({ peer }, `peer ${peer} refuses this node: ${message}`);
    this.#o.refused({ peer, reason: 'refused-by-peer', message });
  }

  /**
   * Forgets the incarnations of nodes that are no longer members of `config`, a committed
   * configuration (an uncommitted removal may be cut from the log, and the member with it): each
   * applied configuration entry in turn (`index` is its index), or an installed snapshot's.
   */
  retain(config: ClusterConfig, index: number): void {
    this.#membersAsOf = Math.max(this.#membersAsOf, index);
    const current = members(config);
    const known = this.#identity.members;
    const kept = Object.entries(known).filter(([id]) => current.includes(id));
    if (kept.length === Object.keys(known).length) return;
    for (const id of this.#refusedPeers.keys()) {
      if (!current.includes(id)) this.#refusedPeers.delete(id);
    }
    const gone = Object.entries(known).flatMap(([id, incarnation]) =>
      current.includes(id) ? [] : [incarnation],
    );
    const retired = [...(this.#identity.retired ?? []), ...gone].slice(-MAX_RETIRED);
    this.#update({ ...this.#identity, members: Object.fromEntries(kept), retired });
  }

  /**
   * At start, when the latest configuration in the log is not applied yet: `applied` is the
   * latest configuration applied, `later` those after it in the log (not applied: an uncommitted
   * one may be cut). Leaders' views are compared with `applied`'s index, as before the restart
   * (not with 0: a leader that applied less could teach this node the incarnation of a member it
   * saw removed). The members `applied` does not list are forgotten, as applying it did (a crash
   * may have come before that reached the stored identity): retired as {@link retain} does,
   * except those a later configuration adds back, which are only forgotten, to be learned again:
   * the incarnation stored for such a member may be its old one, from before its removal (it
   * came back under a new one), or the one learned since, and which is not known.
   */
  restarted(
    applied: { readonly config: ClusterConfig; readonly index: number },
    later: readonly ClusterConfig[],
  ): void {
    const current = members(applied.config);
    const addedBack = new Set(later.flatMap((config) => members(config)));
    const own = this.#identity;
    const kept = Object.entries(own.members).filter(
      ([id]) => current.includes(id) || !addedBack.has(id),
    );
    if (kept.length < Object.keys(own.members).length) {
      for (const id of this.#refusedPeers.keys()) {
        if (!current.includes(id) && addedBack.has(id)) this.#refusedPeers.delete(id);
      }
      this.#update({ ...own, members: Object.fromEntries(kept) });
    }
    this.retain(applied.config, applied.index);
  }

  /**
   * An installed snapshot's configuration (`index` is the snapshot's). The snapshot may cover a
   * member's removal and its addition back under a new incarnation, which this node never saw:
   * when the latest leader's view is as of the snapshot or later, the incarnation it knows for a
   * member replaces this node's (the replaced one retired), then {@link retain} follows.
   */
  installed(config: ClusterConfig, index: number): void {
    const view = this.#leaderView;
    if (view.asOf >= index) {
      const own = this.#identity;
      const replaced = members(config).filter((id) => {
        const theirs = view.members[id];
        const mine = own.members[id];
        return (
          id !== this.#o.id &&
          theirs !== undefined &&
          mine !== undefined &&
          theirs !== mine &&
          !own.retired?.includes(theirs)
        );
      });
      if (replaced.length > 0) {
        const adopted = Object.fromEntries(replaced.map((id) => [id, view.members[id] as string]));
        const retired = [
          ...(own.retired ?? []),
          ...replaced.map((id) => own.members[id] as string),
        ].slice(-MAX_RETIRED);
        for (const id of replaced) this.#refusedPeers.delete(id);
        this.#update({ ...own, members: { ...own.members, ...adopted }, retired });
      }
    }
    this.retain(config, index);
  }

  /** The identity to persist, if it changed since the last call. */
  takeChanged(): NodeIdentity | undefined {
    if (!this.#changed) return undefined;
    this.#changed = false;
    return this.#identity;
  }

  #learn(from: NodeId, identity: PeerIdentity): void {
    const own = this.#identity;
    let learned = own.members;
    // A retired incarnation is not learned again (a late message from before the member's removal
    // would pin it), though a member added back on the same storage speaks under it.
    if (learned[from] === undefined && !own.retired?.includes(identity.incarnation)) {
      learned = { ...learned, [from]: identity.incarnation };
    }
    // Only what this node does not know: a leader's view never replaces its own, since a leader
    // that forgot a removed member may have learned the incarnation of its replacement while this
    // node, behind, still counts the member's vote (simulation seed 1200020 with loseDisk).
    // Nor from a leader that applied less than this node: it may not have forgotten a member this
    // node saw removed (and added back, under a new incarnation to learn). Both indices are applied
    // positions (the leader's applied index; this node's latest configuration entry or snapshot),
    // so a leader at or past this node's applied every configuration this node did, committed
    // prefixes being the same: a node that installed a snapshot learns from the leader too.
    const asOf = identity.membersAsOf ?? 0;
    if (identity.members !== undefined && asOf >= this.#leaderView.asOf) {
      this.#leaderView = { members: identity.members, asOf };
    }
    const current = asOf >= this.#membersAsOf;
    for (const [id, incarnation] of current ? Object.entries(identity.members ?? {}) : []) {
      if (id !== this.#o.id && learned[id] === undefined && !own.retired?.includes(incarnation)) {
        learned = { ...learned, [id]: incarnation };
      }
    }
    const clusterId = own.clusterId ?? identity.clusterId;
    if (learned === own.members && clusterId === own.clusterId) return;
    if (clusterId !== own.clusterId) {
      this.#o.logger.info({ clusterId, from }, 'learned the cluster id');
    }
    this.#update({ ...own, clusterId, members: learned });
  }

  #update(identity: NodeIdentity): void {
    this.#identity = identity;
    this.#changed = true;
  }

  #refuse(peer: NodeId, reason: IdentityRefusal, message: string, detail: string): Admission {
    this.#refusedPeers.set(peer, reason);
    const key = `${peer}:${reason}:${detail}`;
    if (!this.#reported.has(key)) {
      this.#reported.add(key);
      this.#o.logger.error({ peer, reason }, message);
      this.#o.refused({ peer, reason, message });
    }
    return { ok: false, message };
  }
}
