import { describe, expect, it } from 'vitest';
import { agreedLeader } from './cluster-health.ts';
import type { NemesisNodeStatus } from './node/nemesis-app.ts';

function status(id: string, fields: Partial<NemesisNodeStatus>): NemesisNodeStatus {
  return {
    id,
    pid: 1,
    state: 'running',
    incarnation: 1,
    role: 'follower',
    term: 3,
    leaderId: null,
    commitIndex: 0,
    appliedIndex: 0,
    lastIndex: 0,
    firstIndex: 1,
    fatal: null,
    ...fields,
  };
}

function statuses(...list: NemesisNodeStatus[]): Map<string, NemesisNodeStatus> {
  return new Map(list.map((s) => [s.id, s]));
}

describe('agreedLeader: the leader the harness waits for before and after each fault', () => {
  it('is a leader that a majority of the cluster (itself included) follows in its term', () => {
    const found = agreedLeader(
      statuses(
        status('n1', { role: 'leader', leaderId: 'n1' }),
        status('n2', { leaderId: 'n1' }),
        status('n3', { leaderId: null }),
      ),
      3,
    );
    expect(found?.id).toBe('n1');
  });

  it('is not a deposed leader that still believes it leads, nor one followed in another term', () => {
    const stale = statuses(
      status('n1', { role: 'leader', leaderId: 'n1', term: 2 }),
      status('n2', { role: 'leader', leaderId: 'n2', term: 3 }),
      status('n3', { leaderId: 'n1', term: 3 }),
    );
    expect(agreedLeader(stale, 3)).toBeUndefined();
  });

  it('needs a majority of the whole cluster, not of the nodes that answered', () => {
    const two = statuses(
      status('n1', { role: 'leader', leaderId: 'n1' }),
      status('n2', { leaderId: 'n1' }),
    );
    expect(agreedLeader(two, 5)).toBeUndefined();
    expect(agreedLeader(two, 3)?.id).toBe('n1');
  });

  it('does not count a node that is restarting after a fatal error', () => {
    const recovering = statuses(
      status('n1', { role: 'leader', leaderId: 'n1' }),
      status('n2', { leaderId: 'n1', state: 'recovering' }),
      status('n3', {}),
    );
    expect(agreedLeader(recovering, 3)).toBeUndefined();
  });
});
