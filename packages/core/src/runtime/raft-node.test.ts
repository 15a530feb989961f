import { describe, expect, it } from 'vitest';
import {
  CommandError,
  NodeClosedError,
  NotLeaderError,
  ProposalDroppedError,
  ReadUnavailableError,
  SnapshotExportRefusedError,
  StorageError,
} from '../errors.ts';
import type { Message } from '../message.ts';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import {
  type KvNode,
  PausableTicks,
  sleep,
  TestCluster,
  waitFor,
} from '../testing/test-cluster.test-helpers.ts';
import type { Transport } from '../transport.ts';
import { RaftNode } from './raft-node.ts';

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

describe('RaftNode', () => {
  it('elects a leader and applies proposals on every node (Raft paper 5.2, 5.3)', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const results = await Promise.all([
      leader.propose(put('a', '1')),
      leader.propose(put('b', '2')),
      leader.propose({ op: 'append', key: 'a', value: '+' }),
    ]);
    expect(results).toEqual([
      { op: 'put', value: '1' },
      { op: 'put', value: '2' },
      { op: 'append', value: '1+' },
    ]);
    await cluster.waitForApplied(leader.status().commitIndex);
    for (const id of cluster.ids) {
      expect(cluster.disk(id).stateMachine.get('a')).toBe('1+');
      expect(cluster.disk(id).stateMachine.get('b')).toBe('2');
    }
  });

  it('answers a peer in the response of its request once the reaction is durable: a follower sends no request of its own to acknowledge appends', async () => {
    const seen = { appendAcksInRequests: 0, appendAcksInResponses: 0, requestsToLeader: 0 };
    let leaderId: string | undefined;
    const count = (
      messages: readonly Message[],
      into: 'appendAcksInRequests' | 'appendAcksInResponses',
    ) => {
      seen[into] += messages.filter(
        (m) => m.type === 'append-response' && m.to === leaderId,
      ).length;
    };
    await using cluster = await TestCluster.start({
      // Slow ticks and long deadlines: no election and no request given up during the writes.
      tickMs: 50,
      node: { requestTimeoutMs: 30_000 },
      wrapTransport: (_id, transport): Transport => ({
        request: async (to, request, options) => {
          if (request.type === 'raft') {
            count(request.messages, 'appendAcksInRequests');
            if (to === leaderId) seen.requestsToLeader++;
          }
          const response = await transport.request(to, request, options);
          if (response.type === 'raft') count(response.messages, 'appendAcksInResponses');
          return response;
        },
        listen: (handler) => transport.listen(handler),
        close: () => transport.close?.() ?? Promise.resolve(),
      }),
    });
    const leader = await cluster.waitForLeader();
    const term = leader.status().term;
    leaderId = leader.id;
    for (let i = 0; i < 20; i++) await leader.propose(put(`k${i}`, String(i)));
    expect(leader.status().term).toBe(term);
    // Each of the 20 writes was acknowledged by a majority, in answers to the leader's requests.
    expect(seen.appendAcksInResponses).toBeGreaterThanOrEqual(20);
    expect(seen.appendAcksInRequests).toBe(0);
    expect(seen.requestsToLeader).toBe(0);
  });

  it('answers a request without reply (a peer of an earlier version) with ack at once, and one with reply and nothing to react to with no message', async () => {
    await using cluster = await TestCluster.start({ size: 1 });
    const node = await cluster.waitForLeader();
    // Applied, so that the leader's applied index (its members' `membersAsOf`) stays put.
    await node.propose(put('k', 'v'));
    const applied = node.status().appliedIndex;
    expect(applied).toBeGreaterThan(0);
    const peer = cluster.network.transport('n9');
    const signal = new AbortController().signal;
    await expect(
      peer.request(node.id, { type: 'raft', messages: [] }, { signal }),
    ).resolves.toEqual({ type: 'ack' });
    await expect(
      peer.request(node.id, { type: 'raft', messages: [], reply: true }, { signal }),
    ).resolves.toEqual({
      type: 'raft',
      messages: [],
      identity: {
        clusterId: null,
        incarnation: node.status().identity.incarnation,
        receiverIncarnation: null,
        members: {},
        membersAsOf: applied,
      },
    });
  });

  it('runs a single-node cluster: its own durable write commits', async () => {
    await using cluster = await TestCluster.start({ size: 1 });
    const leader = await cluster.waitForLeader();
    await expect(leader.propose(put('k', 'v'))).resolves.toEqual({ op: 'put', value: 'v' });
    await expect(leader.read(() => cluster.disk('n1').stateMachine.get('k'))).resolves.toBe('v');
  });

  it('takes inputs that arrive in separate callbacks of one event-loop phase into one Ready (group commit)', async () => {
    await using cluster = await TestCluster.start({ size: 1 });
    const leader = await cluster.waitForLeader();
    await leader.propose(put('warm', 'up'));
    const store = cluster.disk(leader.id).logStore!;
    const persisted: number[] = [];
    const persist = store.persist.bind(store);
    store.persist = (write, options) => {
      if (write.entries !== undefined) persisted.push(write.entries.length);
      return persist(write, options);
    };
    // Two timers due at once run as two callbacks of one timers phase, as requests that arrive
    // together run as callbacks of one I/O phase.
    const proposals = await new Promise<Promise<unknown>[]>((resolve) => {
      const started: Promise<unknown>[] = [];
      setTimeout(() => started.push(leader.propose(put('a', '1'))), 5);
      setTimeout(() => resolve([...started, leader.propose(put('b', '2'))]), 5);
    });
    await Promise.all(proposals);
    expect(persisted).toEqual([2]);
  });

  it("a leader's AppendEntries leave while its own write persists; its own entry counts toward commit, and is applied, only once that write is durable (thesis 10.2.1)", async () => {
    await using cluster = await TestCluster.start({ tickMs: 50 });
    const leader = await cluster.waitForLeader();
    await leader.propose(put('warm', 'up'));
    const [reached, cut] = cluster.followers(leader) as [KvNode, KvNode];
    // Only one follower gets the entry: the leader's durable copy is needed for a quorum.
    cluster.network.drop(leader.id, cut.id);
    const store = cluster.disk(leader.id).logStore!;
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const persist = store.persist.bind(store);
    store.persist = async (write, options) => {
      if (write.entries !== undefined) await held;
      return persist(write, options);
    };
    const index = leader.status().appliedIndex + 1;
    let settled = false;
    const proposal = leader.propose(put('k', 'v')).finally(() => {
      settled = true;
    });
    try {
      // The follower holds the entry durably and its acknowledgement reached the leader, whose
      // own write of it is still held.
      await waitFor(() => (leader.status().progress[reached.id]?.match ?? 0) >= index);
      expect(cluster.disk(reached.id).log?.entries.at(-1)?.index).toBe(index);
      expect(store.durable.entries.at(-1)?.index).toBe(index - 1);
      await sleep(50);
      expect(leader.status().commitIndex).toBe(index - 1);
      expect(settled).toBe(false);
    } finally {
      // close() waits for the write in flight.
      release();
    }
    await expect(proposal).resolves.toEqual({ op: 'put', value: 'v' });
    expect(leader.status().commitIndex).toBeGreaterThanOrEqual(index);
  });

  it('forwards a proposal from a follower to the leader and returns its result', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const follower = cluster.followers(leader)[0]!;
    await expect(follower.propose(put('f', 'x'))).resolves.toEqual({ op: 'put', value: 'x' });
    expect(cluster.disk(leader.id).stateMachine.get('f')).toBe('x');
  });

  it('proposeWithPosition resolves with the entry index and term, on the leader and forwarded from a follower', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const follower = cluster.followers(leader)[0]!;
    const onLeader = await leader.proposeWithPosition(put('a', '1'));
    const forwarded = await follower.proposeWithPosition(put('b', '2'));
    const term = leader.status().term;
    expect(onLeader).toEqual({ index: onLeader.index, term, result: { op: 'put', value: '1' } });
    expect(forwarded).toEqual({
      index: onLeader.index + 1,
      term,
      result: { op: 'put', value: '2' },
    });
    // The position is the entry's: the leader's log holds the command there.
    const entry = cluster
      .disk(leader.id)
      .log?.entries.find((candidate) => candidate.index === forwarded.index);
    expect(entry).toMatchObject({ index: forwarded.index, term });
    expect(new TextDecoder().decode(entry?.data)).toContain('"key":"b"');
  });

  it('a leader reports a follower that lost entries it had acknowledged (error log and follower-lost-entries event)', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const reports: { follower: string; acknowledged: number; lastIndex: number }[] = [];
    leader.on('follower-lost-entries', ({ follower, acknowledged, lastIndex }) => {
      reports.push({ follower, acknowledged, lastIndex });
    });
    for (let i = 0; i < 5; i++) await leader.propose(put(`k${i}`, 'v'));
    const follower = cluster.followers(leader)[0]!;
    await waitFor(() => follower.status().appliedIndex >= leader.status().commitIndex);
    const acknowledged = leader.status().progress?.[follower.id]?.match ?? 0;
    expect(acknowledged).toBeGreaterThanOrEqual(5);
    expect(reports).toEqual([]);
    // Its storage loses the log it acknowledged (it kept only its term and vote), and its state.
    await cluster.stopNode(follower.id);
    const disk = cluster.disk(follower.id);
    disk.log = { ...disk.log!, entries: [] };
    disk.stateMachine = new KvStateMachine();
    await cluster.startNode(follower.id);
    await waitFor(() => reports.length > 0);
    expect(reports[0]).toEqual({ follower: follower.id, acknowledged, lastIndex: 0 });
    // Once per follower and term, however many heartbeats show it; and it catches up.
    await waitFor(() => cluster.node(follower.id).status().appliedIndex >= 5);
    expect(reports).toHaveLength(1);
  });

  it('fails a forwarded proposal the leader never answers once forwardTimeoutMs passes', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const id = cluster.ids.find((other) => other !== leader.id)!;
    await cluster.stopNode(id);
    const inner = cluster.network.transport(id);
    // A leader that swallows forwarded proposals: the request never settles by itself.
    const silent: Transport = {
      request: (to, request, options) =>
        request.type === 'propose'
          ? new Promise((_, reject) => {
              options.signal.addEventListener('abort', () => reject(options.signal.reason), {
                once: true,
              });
            })
          : inner.request(to, request, options),
      listen: (handler) => inner.listen(handler),
      close: () => inner.close(),
    };
    const follower = await cluster.startNode(id, { transport: silent, forwardTimeoutMs: 100 });
    await waitFor(() => follower.status().leaderId !== null);
    const started = performance.now();
    await expect(follower.propose(put('k', 'v'))).rejects.toThrow(/outcome is unknown/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('rejects a proposal on a follower with NotLeaderError when forwarding is off', async () => {
    await using cluster = await TestCluster.start({ node: { forwardProposals: false } });
    const leader = await cluster.waitForLeader();
    const follower = cluster.followers(leader)[0]!;
    const error = await follower.propose(put('f', 'x')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotLeaderError);
    expect((error as NotLeaderError).leaderHint).toBe(leader.id);
    expect((error as NotLeaderError).retryable).toBe(true);
  });

  it('rejects a command the state machine refuses with CommandError', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const bogus = { op: 'bogus', key: 'k' } as unknown as KvCommand;
    const local = await leader.propose(bogus).catch((e: unknown) => e);
    expect(local).toBeInstanceOf(CommandError);
    expect((local as CommandError).errorName).toBe('UnknownCommandError');
    const forwarded = await cluster
      .followers(leader)[0]!
      .propose(bogus)
      .catch((e: unknown) => e);
    expect(forwarded).toBeInstanceOf(CommandError);
  });

  it('keeps its leader while the state machine is slow: apply runs off the consensus loop', async () => {
    // Each apply batch takes longer than the longest election timeout (10 ticks of 10 ms, x2).
    await using cluster = await TestCluster.start({ tickMs: 10, applyDelayMs: 250 });
    const leader = await cluster.waitForLeader();
    const term = leader.status().term;
    const changes: string[] = [];
    for (const node of cluster.nodes.values()) {
      // A follower may learn of this same leader only now; any other leader is a change.
      node.on('leader-change', (event) => {
        if (event.leaderId !== leader.id) changes.push(`${node.id}:${event.leaderId}`);
      });
    }
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) {
      // Settled at once, so that a failure shows in the assertion, not as an unhandled rejection.
      writes.push(leader.propose(put(`k${i}`, `${i}`)).catch((error: unknown) => error));
      await sleep(60);
    }
    expect(await Promise.all(writes)).toEqual(
      [0, 1, 2, 3].map((i) => ({ op: 'put', value: `${i}` })),
    );
    expect(changes).toEqual([]);
    expect(leader.status()).toMatchObject({ role: 'leader', term });
  });

  it('elects a new leader when the leader is closed, and writes continue', async () => {
    await using cluster = await TestCluster.start();
    const first = await cluster.waitForLeader();
    await first.propose(put('before', '1'));
    await cluster.stopNode(first.id);
    const second = await cluster.waitForLeader();
    expect(second.id).not.toBe(first.id);
    await expect(second.propose(put('after', '2'))).resolves.toEqual({ op: 'put', value: '2' });
    // Leader Completeness (Raft paper 5.4): the committed write survived the change.
    await expect(
      second.read(() => cluster.disk(second.id).stateMachine.get('before')),
    ).resolves.toBe('1');
  });

  it('elects a new leader when the leader is partitioned; the old one steps down (CheckQuorum)', async () => {
    await using cluster = await TestCluster.start();
    const first = await cluster.waitForLeader();
    cluster.network.partition(first.id);
    const others = cluster.ids.filter((id) => id !== first.id);
    const second = await cluster.waitForLeader({ among: others });
    expect(second.id).not.toBe(first.id);
    await expect(second.propose(put('p', '1'))).resolves.toEqual({ op: 'put', value: '1' });
    await waitFor(() => first.status().role !== 'leader', { what: 'the old leader to step down' });
    cluster.network.heal();
    await waitFor(
      () =>
        first.status().leaderId === second.id &&
        first.status().appliedIndex >= second.status().commitIndex,
      {
        what: 'the old leader to follow and catch up',
      },
    );
    expect(cluster.disk(first.id).stateMachine.get('p')).toBe('1');
  });

  it('rejects a proposal whose entry a new leader overwrote with ProposalDroppedError (Raft paper 5.3)', async () => {
    await using cluster = await TestCluster.start();
    const old = await cluster.waitForLeader();
    cluster.network.partition(old.id);
    const lost = old.propose(put('lost', 'yes')).catch((error: unknown) => error);
    const others = cluster.ids.filter((id) => id !== old.id);
    const next = await cluster.waitForLeader({ among: others });
    await next.propose(put('won', 'yes'));
    await next.propose(put('won', 'again'));
    cluster.network.heal();
    expect(await lost).toBeInstanceOf(ProposalDroppedError);
    await waitFor(() => old.status().appliedIndex >= next.status().commitIndex, {
      what: 'the old leader to catch up',
    });
    for (const id of cluster.ids) {
      expect(cluster.disk(id).stateMachine.get('lost')).toBeNull();
      expect(cluster.disk(id).stateMachine.get('won')).toBe('again');
    }
  });

  it('restarts a node from its stores alone; it rejoins and catches up', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    await leader.propose(put('x', '1'));
    const follower = cluster.followers(leader)[0]!;
    const before = follower.status();
    await cluster.waitForApplied(leader.status().commitIndex);
    await cluster.stopNode(follower.id);
    await leader.propose(put('x', '2'));
    await leader.propose(put('y', '3'));
    const restarted = await cluster.startNode(follower.id);
    expect(restarted.status().term).toBeGreaterThanOrEqual(before.term);
    await waitFor(() => restarted.status().appliedIndex >= leader.status().commitIndex, {
      what: 'the restarted node to catch up',
    });
    expect(cluster.disk(follower.id).stateMachine.get('x')).toBe('2');
    expect(cluster.disk(follower.id).stateMachine.get('y')).toBe('3');
    expect(leader.status().role).toBe('leader');
  });

  it('restarts the whole cluster from its stores; committed writes survive', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    await leader.propose(put('durable', 'yes'));
    for (const id of cluster.ids) await cluster.stopNode(id);
    for (const id of cluster.ids) cluster.disk(id).stateMachine = new KvStateMachine();
    for (const id of cluster.ids) await cluster.startNode(id);
    const next = await cluster.waitForLeader();
    // The fresh state machines re-apply the whole log.
    await expect(next.read(() => cluster.disk(next.id).stateMachine.get('durable'))).resolves.toBe(
      'yes',
    );
  });

  it('applies a command with the same client session exactly once (thesis 6.3)', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const session = { clientId: 'client-1', seq: 1 };
    const append: KvCommand = { op: 'append', key: 'log', value: 'a' };
    const first = await leader.propose(append, { session });
    const follower = cluster.followers(leader)[0]!;
    const retry = await follower.propose(append, { session });
    expect(first).toEqual({ op: 'append', value: 'a' });
    expect(retry).toEqual(first);
    await cluster.waitForApplied(leader.status().commitIndex);
    for (const id of cluster.ids) expect(cluster.disk(id).stateMachine.get('log')).toBe('a');
  });

  it('serves a linearizable read on the leader and on a follower after a write (thesis 6.4)', async () => {
    await using cluster = await TestCluster.start({ applyDelayMs: 20 });
    const leader = await cluster.waitForLeader();
    const follower = cluster.followers(leader)[0]!;
    await leader.propose(put('r', '1'));
    await expect(leader.read(() => cluster.disk(leader.id).stateMachine.get('r'))).resolves.toBe(
      '1',
    );
    await follower.propose(put('r', '2'));
    const other = cluster.followers(leader)[1]!;
    await expect(other.read(() => cluster.disk(other.id).stateMachine.get('r'))).resolves.toBe('2');
    await expect(
      follower.read(() => cluster.disk(follower.id).stateMachine.get('r'), {
        consistency: 'local',
      }),
    ).resolves.not.toBeUndefined();
  });

  it('batches reads that arrive together into one ReadIndex request; a read that starts after the request left asks anew, so it sees writes completed before it (thesis 6.4)', async () => {
    // Ticks pause while the reads wait: a follower resends the ReadIndex requests it waits for
    // every other heartbeat interval, and an election would fail them, so how many go out must
    // not depend on how long each step takes under load. Deadlines are long for the same reason.
    const ticks = new PausableTicks();
    await using cluster = await TestCluster.start({
      node: { clock: ticks.clock, requestTimeoutMs: 30_000, readTimeoutMs: 30_000 },
    });
    const leader = await cluster.waitForLeader();
    const id = cluster.ids.find((other) => other !== leader.id)!;
    await cluster.stopNode(id);
    const inner = cluster.network.transport(id);
    const readIndexRequests: string[] = [];
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    /** Counts the ReadIndex requests among `messages`; true if there is one. */
    const holdsReadIndex = (messages: readonly Message[]): boolean => {
      const reads = messages.filter((m) => m.type === 'read-index');
      readIndexRequests.push(...reads.map((m) => m.id));
      return reads.length > 0;
    };
    // Holds every request that carries a ReadIndex request until `release`, and every answer to
    // the leader's requests that carries one (a request to the leader that a follower makes while
    // it reacts to one of the leader's travels in the answer).
    const gated: Transport = {
      request: async (to, request, options) => {
        if (request.type === 'raft' && holdsReadIndex(request.messages)) await gate;
        return inner.request(to, request, options);
      },
      listen: (handler) =>
        inner.listen(async (from, request, options) => {
          const response = await handler(from, request, options);
          if (response.type === 'raft' && holdsReadIndex(response.messages)) await gate;
          return response;
        }),
      close: () => inner.close(),
    };
    const follower = await cluster.startNode(id, { transport: gated });
    const machine = cluster.disk(id).stateMachine;
    await leader.propose(put('x', '1'));
    // Pause once every node follows the leader in its term: no election can start meanwhile.
    await waitFor(() => {
      ticks.pause();
      const { term } = leader.status();
      const following = cluster.followers(leader).every((node) => {
        const s = node.status();
        return s.role === 'follower' && s.leaderId === leader.id && s.term === term;
      });
      if (leader.status().role === 'leader' && following) return true;
      ticks.resume();
      return false;
    });
    const early = Array.from({ length: 10 }, () => follower.read(() => machine.get('x')));
    await waitFor(() => readIndexRequests.length > 0, { what: 'the first ReadIndex request' });
    await leader.propose(put('x', '2'));
    const late = follower.read(() => machine.get('x'));
    await waitFor(() => readIndexRequests.length > 1, { what: 'a second ReadIndex request' });
    release();
    // The early reads overlap the write: either value is linearizable.
    for (const value of await Promise.all(early)) expect(['1', '2']).toContain(value);
    await expect(late).resolves.toBe('2');
    expect(readIndexRequests).toHaveLength(2);
    ticks.resume();
  });

  it('a read that arrives while the consensus loop is held up past an earlier read’s deadline gets its own full deadline', async () => {
    await using cluster = await TestCluster.start({ size: 1, node: { readTimeoutMs: 200 } });
    const leader = await cluster.waitForLeader();
    await leader.propose(put('k', 'v'));
    const machine = cluster.disk(leader.id).stateMachine;
    const store = cluster.disk(leader.id).logStore!;
    let release = (): void => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const persist = store.persist.bind(store);
    store.persist = async (write, options) => {
      await held;
      return persist(write, options);
    };
    // The loop now waits on this write's persist; reads queue up behind it.
    const write = leader.propose(put('k', 'w'));
    await sleep(20);
    const early = leader.read(() => machine.get('k')).catch((error: unknown) => error);
    await sleep(300);
    expect(await early).toBeInstanceOf(ReadUnavailableError);
    const late = leader.read(() => machine.get('k'));
    await sleep(20);
    release();
    await expect(late).resolves.toBe('w');
    await expect(write).resolves.toEqual({ op: 'put', value: 'w' });
  });

  it('fails a linearizable read on a node cut off from the leader with ReadUnavailableError', async () => {
    await using cluster = await TestCluster.start({ node: { readTimeoutMs: 200 } });
    const leader = await cluster.waitForLeader();
    cluster.network.partition(leader.id);
    const error = await leader.read(() => 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReadUnavailableError);
  });

  it('rejects a pending proposal when its signal aborts', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    cluster.network.partition(leader.id); // the entry cannot commit
    const controller = new AbortController();
    const pending = leader.propose(put('k', 'v'), { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('caller gave up')), 20);
    await expect(pending).rejects.toThrow('caller gave up');
    const forwarded = cluster.followers(leader)[0]!;
    const aborted = AbortSignal.abort(new Error('already aborted'));
    await expect(forwarded.propose(put('k', 'v'), { signal: aborted })).rejects.toThrow(
      'already aborted',
    );
  });

  it('close() fails pending calls with NodeClosedError and refuses new ones', async () => {
    await using cluster = await TestCluster.start({ node: { readTimeoutMs: 10_000 } });
    const leader = await cluster.waitForLeader();
    cluster.network.partition(leader.id);
    const proposal = leader.propose(put('k', 'v')).catch((error: unknown) => error);
    const read = leader.read(() => 1).catch((error: unknown) => error);
    await sleep(10);
    await cluster.stopNode(leader.id);
    expect(await proposal).toBeInstanceOf(NodeClosedError);
    expect(await read).toBeInstanceOf(NodeClosedError);
    await expect(leader.propose(put('k', 'v'))).rejects.toBeInstanceOf(NodeClosedError);
    expect(leader.status().closed).toBe(true);
    await leader.close(); // idempotent
  });

  it('stops once, loudly, on a storage failure (fatal)', async () => {
    const errors: string[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (_context: object | string, message?: string) => errors.push(message ?? ''),
    };
    await using cluster = await TestCluster.start({ node: { logger } });
    const leader = await cluster.waitForLeader();
    const fatal: Error[] = [];
    leader.on('fatal', ({ error }) => fatal.push(error));
    cluster.disk(leader.id).logStore!.failNextPersist(new Error('disk on fire'));
    const error = await leader.propose(put('k', 'v')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NodeClosedError);
    const cause = (error as NodeClosedError).cause;
    expect(cause).toBeInstanceOf(StorageError);
    expect((cause as StorageError).cause).toEqual(new Error('disk on fire'));
    expect(fatal).toHaveLength(1);
    expect(errors).toHaveLength(1);
    expect(leader.status().closed).toBe(true);
    await expect(leader.read(() => 1)).rejects.toBeInstanceOf(NodeClosedError);
    // The others carry on.
    const others = cluster.ids.filter((id) => id !== leader.id);
    await cluster.stopNode(leader.id);
    const next = await cluster.waitForLeader({ among: others });
    await expect(next.propose(put('k', 'w'))).resolves.toEqual({ op: 'put', value: 'w' });
  });

  it('compacts its log with takeSnapshot and sends the snapshot to a lagging follower (Raft paper 7)', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const lagging = cluster.followers(leader)[0]!.id;
    await cluster.stopNode(lagging);
    for (let i = 0; i < 5; i++) await leader.propose(put(`s${i}`, `${i}`));
    const snapshot = await leader.takeSnapshot();
    expect(snapshot?.index).toBe(leader.status().appliedIndex);
    expect(leader.status().firstIndex).toBe(snapshot!.index + 1);
    expect(cluster.disk(leader.id).log!.snapshot.index).toBe(snapshot!.index);
    await leader.propose(put('after', 'snap'));

    const restarted = await cluster.startNode(lagging);
    await waitFor(() => restarted.status().appliedIndex >= leader.status().commitIndex, {
      what: 'the lagging follower to install the snapshot and catch up',
    });
    const kv = cluster.disk(lagging).stateMachine;
    expect(kv.get('s4')).toBe('4');
    expect(kv.get('after')).toBe('snap');
    expect(cluster.disk(lagging).snapshots!.latest?.snapshot.index).toBe(snapshot!.index);

    // A node restarted on a compacted log starts from its snapshot.
    await cluster.stopNode(lagging);
    cluster.disk(lagging).stateMachine = new KvStateMachine();
    const again = await cluster.startNode(lagging);
    expect(again.status().appliedIndex).toBeGreaterThanOrEqual(snapshot!.index);
    await waitFor(() => cluster.disk(lagging).stateMachine.get('after') === 'snap', {
      what: 'the restored node to re-apply the log after its snapshot',
    });
  });

  it('goes on when the state machine refuses to export a snapshot: takeSnapshot rejects with SnapshotExportRefusedError, the log and the stored snapshots stay as they were', async () => {
    const errors: string[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (_context: object | string, message?: string) => errors.push(message ?? ''),
    };
    await using cluster = await TestCluster.start({ node: { logger } });
    const leader = await cluster.waitForLeader();
    await leader.propose(put('a', '1'));
    const first = await leader.takeSnapshot();
    await leader.propose(put('b', '2'));
    const before = leader.status();
    const disk = cluster.disk(leader.id);
    const kv = disk.stateMachine;
    const exportSnapshot = kv.exportSnapshot.bind(kv);
    const refusal = new SnapshotExportRefusedError('a value of table t cannot be snapshotted');
    // Refused from the stream, after a first chunk, and wrapped by a store: the snapshot store
    // saw part of it, which must not become the latest.
    kv.exportSnapshot = async (options) => {
      const exported = await exportSnapshot(options);
      async function* chunks(): AsyncGenerator<Uint8Array> {
        yield new Uint8Array([1, 2, 3]);
        throw new StorageError('the store could not save', { cause: refusal });
      }
      return { position: exported.position, chunks: chunks() };
    };
    await expect(leader.takeSnapshot()).rejects.toBe(refusal);
    // Refused by the call itself.
    kv.exportSnapshot = async () => {
      throw refusal;
    };
    await expect(leader.takeSnapshot()).rejects.toBe(refusal);

    expect(errors).toHaveLength(2);
    expect(errors[0]).toContain('a value of table t cannot be snapshotted');
    expect(leader.status().closed).toBe(false);
    expect(leader.status().firstIndex).toBe(before.firstIndex);
    expect(disk.snapshots!.latest?.snapshot.index).toBe(first!.index);
    expect(disk.log!.snapshot.index).toBe(first!.index);
    await expect(leader.propose(put('c', '3'))).resolves.toEqual({ op: 'put', value: '3' });

    // Once the state machine exports again, the next snapshot is taken.
    kv.exportSnapshot = exportSnapshot;
    const next = await leader.takeSnapshot();
    expect(next?.index).toBe(leader.status().appliedIndex);
    expect(disk.snapshots!.latest?.snapshot.index).toBe(next!.index);
    expect(errors).toHaveLength(2);
  });

  it('emits role, leader, commit and apply events', async () => {
    await using cluster = await TestCluster.start({ size: 1 });
    const events: string[] = [];
    const node = cluster.node('n1');
    node.on('role-change', (e) => events.push(`role:${e.role}`));
    node.on('leader-change', (e) => events.push(`leader:${e.leaderId}`));
    node.once('commit', () => events.push('commit'));
    node.once('apply', () => events.push('apply'));
    await cluster.waitForLeader();
    await node.propose(put('e', '1'));
    expect(events).toContain('role:leader');
    expect(events).toContain('leader:n1');
    expect(events).toContain('commit');
    expect(events).toContain('apply');
  });

  it('refuses to start when the start signal is already aborted', async () => {
    await expect(
      RaftNode.start({
        id: 'n1',
        config: { voters: ['n1'] },
        logStore: new MemoryLogStore(),
        snapshotStore: new MemorySnapshotStore(),
        stateMachine: new KvStateMachine(),
        transport: new InProcessNetwork().transport('n1'),
        signal: AbortSignal.abort(new Error('no')),
      }),
    ).rejects.toThrow('no');
  });
});
