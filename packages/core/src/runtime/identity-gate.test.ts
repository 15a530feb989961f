import { describe, expect, it } from 'vitest';
import { noopLogger } from '../logger.ts';
import type { NodeIdentity } from '../node-identity.ts';
import type { PeerIdentity } from '../transport.ts';
import { IdentityGate } from './identity-gate.ts';

function gate(identity: Partial<NodeIdentity> = {}) {
  const refused: { peer: string; reason: string }[] = [];
  const g = new IdentityGate({
    id: 'n1',
    identity: { clusterId: null, incarnation: 'i1', members: {}, ...identity },
    logger: noopLogger,
    refused: (event) => refused.push({ peer: event.peer, reason: event.reason }),
  });
  return { g, refused };
}

const from = (incarnation: string, more: Partial<PeerIdentity> = {}): PeerIdentity => ({
  clusterId: null,
  incarnation,
  receiverIncarnation: null,
  ...more,
});

describe('IdentityGate', () => {
  it('learns a member on first contact and refuses it under another incarnation, reporting once', () => {
    const { g, refused } = gate();
    expect(g.admit('n2', from('a'))).toEqual({ ok: true });
    expect(g.takeChanged()?.members).toEqual({ n2: 'a' });
    expect(g.takeChanged()).toBeUndefined();
    expect(g.admit('n2', from('b')).ok).toBe(false);
    expect(g.admit('n2', from('b')).ok).toBe(false);
    expect(refused).toEqual([{ peer: 'n2', reason: 'peer-lost-state' }]);
    expect(g.refusedPeers()).toEqual({ n2: 'peer-lost-state' });
    expect(g.outgoing('n2', false)).toEqual(from('i1', { receiverIncarnation: 'a' }));
  });

  it('leaves a request without identity (an earlier version) unchecked', () => {
    const { g } = gate({ clusterId: 'alpha', members: { n2: 'a' } });
    expect(g.admit('n2', undefined)).toEqual({ ok: true });
    expect(g.takeChanged()).toBeUndefined();
  });

  it('refuses another cluster, and a node without a cluster id learns it', () => {
    const alpha = gate({ clusterId: 'alpha' });
    expect(alpha.g.admit('n2', from('a', { clusterId: 'beta' })).ok).toBe(false);
    expect(alpha.refused).toEqual([{ peer: 'n2', reason: 'other-cluster' }]);
    expect(alpha.g.admit('n3', from('c', { clusterId: null })).ok).toBe(true);
    const joiner = gate();
    expect(joiner.g.admit('n2', from('a', { clusterId: 'alpha' })).ok).toBe(true);
    expect(joiner.g.identity.clusterId).toBe('alpha');
  });

  it('is told it lost its state, grants nothing until addressed under its incarnation', () => {
    const { g, refused } = gate();
    expect(g.admit('n2', from('a', { receiverIncarnation: 'i0' })).ok).toBe(false);
    expect(g.lostState).toBe(true);
    expect(refused).toEqual([{ peer: 'n2', reason: 'lost-state' }]);
    expect(g.admit('n3', from('c')).ok).toBe(true);
    expect(g.lostState).toBe(true);
    expect(g.admit('n2', from('a', { receiverIncarnation: 'i1' })).ok).toBe(true);
    expect(g.lostState).toBe(false);
  });

  it('retires the incarnation of a removed member: it is not learned again, from the member or from a leader', () => {
    const { g, refused } = gate({ members: { n2: 'a', n3: 'old' } });
    g.retain({ voters: ['n1', 'n2'] }, 5);
    expect(g.identity.retired).toEqual(['old']);
    // A late message (or the member added back on the same storage) passes, and teaches nothing.
    expect(g.admit('n3', from('old')).ok).toBe(true);
    expect(g.admit('n2', from('a', { members: { n3: 'old' }, membersAsOf: 5 })).ok).toBe(true);
    expect(g.identity.members).toEqual({ n2: 'a' });
    expect(g.admit('n3', from('new')).ok).toBe(true);
    expect(g.identity.members).toEqual({ n2: 'a', n3: 'new' });
    expect(refused).toEqual([]);
  });

  it('fills in what it does not know from the leader, never replacing its own, and forgets members that leave', () => {
    const { g } = gate({ members: { n2: 'a', n3: 'old' } });
    expect(g.admit('n2', from('a', { members: { n1: 'i1', n3: 'new', n4: 'd' } })).ok).toBe(true);
    expect(g.identity.members).toEqual({ n2: 'a', n3: 'old', n4: 'd' });
    g.retain({ voters: ['n1', 'n2', 'n4'] }, 9);
    expect(g.identity.members).toEqual({ n2: 'a', n4: 'd' });
    expect(g.identity.retired).toEqual(['old']);
    expect(g.outgoing('n3', true)).toEqual(
      from('i1', { members: { n2: 'a', n4: 'd' }, membersAsOf: 9 }),
    );
    // A leader that applied fewer configurations may still know a member this node saw removed.
    expect(g.admit('n4', from('d', { members: { n3: 'old' }, membersAsOf: 7 })).ok).toBe(true);
    expect(g.identity.members).toEqual({ n2: 'a', n4: 'd' });
    expect(g.admit('n4', from('d', { members: { n3: 'new' }, membersAsOf: 9 })).ok).toBe(true);
    expect(g.identity.members).toEqual({ n2: 'a', n3: 'new', n4: 'd' });
  });
});
