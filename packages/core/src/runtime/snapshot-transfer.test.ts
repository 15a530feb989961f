import { describe, expect, it } from 'vitest';
import type { NodeId } from '../log-entry.ts';
import { type LogFn, type Logger, noopLogger } from '../logger.ts';
import type { KvCommand } from '../testing/kv-state-machine.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import { sleep, TestCluster, waitFor } from '../testing/test-cluster.test-helpers.ts';
import type { PeerRequest, PeerResponse, SnapshotChunk, Transport } from '../transport.ts';
import type { RaftNodeEvents } from './raft-node-events.ts';

// The chunked, resumable InstallSnapshot (Raft paper 7, "InstallSnapshot RPC": offset, data,
// done) between real RaftNodes: pieces of 100 bytes, so a snapshot of a few kilobytes travels in
// dozens of them.

const PIECE = 100;

const put = (key: string, value: string): KvCommand => ({ op: 'put', key, value });

/** What a test does to the snapshot pieces a node sends, and what it saw of them. */
class PieceTap {
  readonly sent: { from: NodeId; to: NodeId; chunk: SnapshotChunk }[] = [];
  /** Requests with data pieces to let through before cutting the link; `undefined`: no cut. */
  cutAfter: number | undefined;
  /** Flip a byte of the n-th data piece (counted from 1), keeping its CRC-32. */
  corruptPiece: number | undefined;
  /** While set, snapshot requests wait for it before they leave. */
  gate: Promise<void> | undefined;
  /** While set, the answer to the piece that completes a snapshot waits for it. */
  holdFinalAnswer: Promise<void> | undefined;
  /** Data pieces to let through before the next ones wait for `release()`; `undefined`: none. */
  pauseAfter: number | undefined;
  #dataPieces = 0;
  #release: (() => void) | undefined;
  readonly #released = new Promise<void>((resolve) => {
    this.#release = resolve;
  });

  /** Lets the pieces held by `pauseAfter` go on. */
  release(): void {
    this.#release?.();
  }

  wrap(from: NodeId, transport: Transport): Transport {
    return {
      listen: (handler) => transport.listen(handler),
      close: () => transport.close?.() ?? Promise.resolve(),
      request: async (to, request, options): Promise<PeerResponse> => {
        if (request.type !== 'snapshot') return transport.request(to, request, options);
        await this.gate;
        let chunk = request.chunk;
        if (chunk.data.byteLength > 0) {
          this.#dataPieces++;
          if (this.cutAfter !== undefined && this.#dataPieces > this.cutAfter) {
            return Promise.reject(new Error('the link is cut'));
          }
          if (this.pauseAfter !== undefined && this.#dataPieces > this.pauseAfter) {
            await this.#released;
          }
          if (this.#dataPieces === this.corruptPiece) {
            const data = chunk.data.slice();
            data[0] = (data[0] ?? 0) ^ 0xff;
            chunk = { ...chunk, data };
          }
        }
        this.sent.push({ from, to, chunk });
        const sent: PeerRequest = { ...request, chunk };
        const answer = await transport.request(to, sent, options);
        if (chunk.offset + chunk.data.byteLength === chunk.size) await this.holdFinalAnswer;
        return answer;
      },
    };
  }

  /** Offsets of the data pieces sent to `to`, in order. */
  offsets(to: NodeId): number[] {
    return this.sent
      .filter((s) => s.to === to && s.chunk.data.byteLength > 0)
      .map((s) => s.chunk.offset);
  }
}

/** A logger that keeps what is logged at `error`. */
function recordingLogger(errors: string[]): Logger {
  const error: LogFn = (context: object | string, message?: string) => {
    errors.push(typeof context === 'string' ? context : (message ?? ''));
  };
  return { ...noopLogger, error, child: () => recordingLogger(errors) };
}

/**
 * A cluster whose requests all go through `tap`, and whose running nodes hold a snapshot a
 * stopped follower needs: it missed every entry the snapshots cover. Returns the cluster, the
 * leader, the lagging follower's id and the leader's snapshot.
 */
async function laggingFollower(tap: PieceTap, options: { errors?: string[] } = {}) {
  const cluster = await TestCluster.start({
    node: {
      snapshotChunkBytes: PIECE,
      snapshotTimeoutMs: 500,
      ...(options.errors === undefined ? {} : { logger: recordingLogger(options.errors) }),
    },
    wrapTransport: (id, transport) => tap.wrap(id, transport),
  });
  const leader = await cluster.waitForLeader();
  const lagging = cluster.followers(leader)[0]!.id;
  await cluster.stopNode(lagging);
  for (let i = 0; i < 40; i++) await leader.propose(put(`key-${i}`, `value ${i} `.repeat(4)));
  await cluster.waitForApplied(leader.status().commitIndex);
  const snapshot = await leader.takeSnapshot();
  for (const follower of cluster.followers(leader)) await follower.takeSnapshot();
  expect(snapshot?.size).toBeGreaterThan(10 * PIECE);
  await leader.propose(put('after', 'the snapshot'));
  return { cluster, leader, lagging, snapshot: snapshot! };
}

describe('chunked InstallSnapshot (Raft paper 7)', () => {
  it('brings a follower that missed the compacted log up to date, piece by piece, then through the log', async () => {
    const tap = new PieceTap();
    const { cluster, lagging, snapshot } = await laggingFollower(tap);
    await using _ = cluster;
    const installed: RaftNodeEvents['snapshot'][0][] = [];
    const follower = await cluster.startNode(lagging);
    follower.on('snapshot', (event) => installed.push(event));
    const leader = await cluster.waitForLeader();
    await leader.propose(put('last', 'write'));
    await cluster.waitForApplied(leader.status().commitIndex);
    const kv = cluster.disk(lagging).stateMachine;
    expect(kv.get('key-39')).toBe('value 39 '.repeat(4));
    expect(kv.get('after')).toBe('the snapshot');
    expect(kv.get('last')).toBe('write');
    const offsets = tap.offsets(lagging);
    expect(offsets.length).toBeGreaterThanOrEqual(Math.ceil(snapshot.size / PIECE));
    expect(offsets.slice(0, 3)).toEqual([0, PIECE, 2 * PIECE]);
    expect(installed.map((event) => event.cause)).toEqual(['installed']);
    expect(installed[0]?.index).toBeGreaterThanOrEqual(snapshot.index);
  });

  it('sends a follower the snapshot taken while a transfer to it was finishing (one transfer at a time, the newer request waits its turn)', async () => {
    const tap = new PieceTap();
    const { cluster, lagging, snapshot: first } = await laggingFollower(tap);
    await using _ = cluster;
    tap.pauseAfter = 2;
    const follower = await cluster.startNode(lagging);
    await waitFor(() => tap.offsets(lagging).length >= 2);
    // Meanwhile the leader moves on and compacts past the snapshot under way.
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 10; i++) await leader.propose(put(`later-${i}`, 'v'));
    const second = await leader.takeSnapshot();
    expect(second?.index).toBeGreaterThan(first.index);
    let releaseFinalAnswer = (): void => {};
    tap.holdFinalAnswer = new Promise<void>((resolve) => {
      releaseFinalAnswer = resolve;
    });
    tap.release();
    // The follower installs the first snapshot and tells the leader's engine, which asks for the
    // second at once, while the transfer of the first still waits for its final answer.
    await waitFor(() => follower.status().snapshotIndex >= first.index);
    await sleep(100);
    releaseFinalAnswer();
    await cluster.waitForApplied(leader.status().commitIndex);
    expect(follower.status().snapshotIndex).toBeGreaterThanOrEqual(second!.index);
    expect(cluster.disk(lagging).stateMachine.get('later-9')).toBe('v');
  });

  it('resumes a transfer cut halfway from the last acknowledged piece, not from the start', async () => {
    const tap = new PieceTap();
    const { cluster, lagging, snapshot } = await laggingFollower(tap);
    await using _ = cluster;
    tap.cutAfter = 5;
    await cluster.startNode(lagging);
    await waitFor(() => tap.offsets(lagging).length >= 5, { what: 'five pieces to arrive' });
    await waitFor(() => cluster.disk(lagging).snapshots?.partial?.chunks.length === 5, {
      what: 'the follower to hold five pieces',
    });
    tap.cutAfter = undefined;
    await waitFor(() => cluster.disk(lagging).stateMachine.get('after') === 'the snapshot', {
      timeoutMs: 10_000,
      what: 'the follower to install the snapshot after the cut',
    });
    const offsets = tap.offsets(lagging);
    // Pieces 0..4 before the cut; the first one after it continues at the sixth piece.
    expect(offsets.slice(0, 5)).toEqual([0, 1, 2, 3, 4].map((i) => i * PIECE));
    expect(offsets[5]).toBe(5 * PIECE);
    expect(offsets.filter((offset) => offset === 0)).toHaveLength(1);
    expect(cluster.disk(lagging).snapshots?.latest?.snapshot.sha256).toBe(snapshot.sha256);
  });

  it('resumes after the follower restarts mid-transfer: its pieces are durable', async () => {
    const tap = new PieceTap();
    const { cluster, lagging } = await laggingFollower(tap);
    await using _ = cluster;
    tap.cutAfter = 7;
    await cluster.startNode(lagging);
    await waitFor(() => cluster.disk(lagging).snapshots?.partial?.chunks.length === 7, {
      what: 'the follower to hold seven pieces',
    });
    await cluster.stopNode(lagging);
    tap.cutAfter = undefined;
    await cluster.startNode(lagging);
    await waitFor(() => cluster.disk(lagging).stateMachine.get('after') === 'the snapshot', {
      timeoutMs: 10_000,
      what: 'the restarted follower to install the snapshot',
    });
    const offsets = tap.offsets(lagging);
    expect(offsets[7]).toBe(7 * PIECE);
    expect(offsets.filter((offset) => offset === 0)).toHaveLength(1);
  });

  it('asks its store again when the store lost the last pieces while the follower ran (its database came back from a crash)', async () => {
    const tap = new PieceTap();
    const { cluster, lagging, snapshot } = await laggingFollower(tap);
    await using _ = cluster;
    tap.pauseAfter = 5;
    const follower = await cluster.startNode(lagging);
    await waitFor(() => cluster.disk(lagging).snapshots?.partial?.chunks.length === 5, {
      what: 'the follower to hold five pieces',
    });
    // The sixth piece waits; meanwhile the store loses the last two the follower acknowledged.
    cluster.disk(lagging).snapshots?.partial?.chunks.splice(3);
    tap.release();
    await waitFor(() => cluster.disk(lagging).stateMachine.get('after') === 'the snapshot', {
      timeoutMs: 10_000,
      what: 'the follower to install the snapshot',
    });
    expect(follower.status().role).toBe('follower');
    const offsets = tap.offsets(lagging);
    // The sixth piece (at 500) was answered with what the store holds (300); the leader went on
    // from there.
    expect(offsets.slice(0, 7)).toEqual([0, 1, 2, 3, 4, 5, 3].map((i) => i * PIECE));
    expect(cluster.disk(lagging).snapshots?.latest?.snapshot.sha256).toBe(snapshot.sha256);
  });

  it('refuses a piece damaged in transit, changes nothing, says so at error, and then takes the good one', async () => {
    const tap = new PieceTap();
    const errors: string[] = [];
    const { cluster, lagging } = await laggingFollower(tap, { errors });
    await using _ = cluster;
    tap.corruptPiece = 3;
    const refused: RaftNodeEvents['snapshot-refused'][0][] = [];
    const follower = await cluster.startNode(lagging);
    follower.on('snapshot-refused', (event) => refused.push(event));
    await waitFor(() => cluster.disk(lagging).stateMachine.get('after') === 'the snapshot', {
      timeoutMs: 10_000,
      what: 'the follower to install the snapshot',
    });
    expect(refused).toHaveLength(1);
    expect(refused[0]?.reason).toMatch(/piece at byte 200 fails its CRC-32/);
    expect(
      errors.some((message) =>
        /refused a snapshot from .*CRC-32.*nothing was changed/.test(message),
      ),
    ).toBe(true);
    // The damaged piece was asked for again: the follower stayed at 200 bytes.
    const offsets = tap.offsets(lagging);
    expect(offsets.filter((offset) => offset === 200)).toHaveLength(2);
  });

  it('replaces a damaged stored snapshot with a fresh one instead of sending it, and reports it (issue 10, item 4)', async () => {
    const tap = new PieceTap();
    const errors: string[] = [];
    const { cluster, leader, lagging, snapshot } = await laggingFollower(tap, { errors });
    await using _ = cluster;
    const corrupt: RaftNodeEvents['snapshot-corrupt'][0][] = [];
    leader.on('snapshot-corrupt', (event) => corrupt.push(event));
    const stored = cluster.disk(leader.id).snapshots?.latest?.chunks[0] as Uint8Array;
    stored[10] = (stored[10] ?? 0) ^ 1;
    const follower = await cluster.startNode(lagging);
    await waitFor(() => cluster.disk(lagging).stateMachine.get('after') === 'the snapshot', {
      timeoutMs: 10_000,
      what: 'the follower to install a good snapshot',
    });
    expect(corrupt).toMatchObject([{ index: snapshot.index, term: snapshot.term }]);
    expect(
      errors.some((message) =>
        /the latest snapshot .* is damaged.*taking a fresh one/.test(message),
      ),
    ).toBe(true);
    const fresh = cluster.disk(leader.id).snapshots?.latest?.snapshot;
    expect(fresh?.index).toBeGreaterThanOrEqual(snapshot.index);
    expect(fresh?.sha256).not.toBe(undefined);
    expect(follower.status().appliedIndex).toBeGreaterThanOrEqual(snapshot.index);
  });

  it('finds a damaged stored snapshot after a start, before any follower needs it', async () => {
    const errors: string[] = [];
    await using cluster = await TestCluster.start({
      size: 1,
      node: { logger: recordingLogger(errors) },
    });
    const node = await cluster.waitForLeader();
    for (let i = 0; i < 5; i++) await node.propose(put(`k${i}`, 'v'));
    const first = await node.takeSnapshot();
    await cluster.stopNode(node.id);
    const stored = cluster.disk(node.id).snapshots?.latest?.chunks[0] as Uint8Array;
    stored[0] = (stored[0] ?? 0) ^ 1;
    await cluster.startNode(node.id);
    await waitFor(
      () => errors.some((message) => /the latest snapshot .* is damaged/.test(message)),
      {
        what: 'the damaged snapshot to be reported at error',
      },
    );
    // A fresh snapshot replaces it: the latest stored reads back whole.
    const readable = async (): Promise<boolean> => {
      const store = new MemorySnapshotStore({ durable: cluster.disk(node.id).snapshots! });
      const latest = await store.latest();
      try {
        for await (const _ of store.read(latest!)) {
          // Read whole: the store checks the checksum.
        }
        return latest!.index >= first!.index;
      } catch {
        return false;
      }
    };
    await expect.poll(readable, { timeout: 3000 }).toBe(true);
  });

  it('reports the latest snapshot and the bytes applied since, for a compaction policy', async () => {
    await using cluster = await TestCluster.start({ size: 1 });
    const node = await cluster.waitForLeader();
    const before = node.status();
    for (let i = 0; i < 10; i++) await node.propose(put(`k${i}`, 'v'.repeat(100)));
    const grown = node.status();
    expect(grown.snapshotIndex).toBe(0);
    // Ten commands of more than 100 bytes each, besides the leader's no-op.
    expect(grown.bytesSinceSnapshot - before.bytesSinceSnapshot).toBeGreaterThan(10 * 100);
    const taken = await node.takeSnapshot();
    expect(node.status()).toMatchObject({ snapshotIndex: taken?.index, bytesSinceSnapshot: 0 });
    await node.propose(put('after', 'x'));
    expect(node.status().bytesSinceSnapshot).toBeGreaterThan(0);
    // A restart counts the applied entries after the snapshot again.
    const bytes = node.status().bytesSinceSnapshot;
    await cluster.stopNode(node.id);
    const restarted = await cluster.startNode(node.id);
    expect(restarted.status()).toMatchObject({ snapshotIndex: taken?.index });
    expect(restarted.status().bytesSinceSnapshot).toBeGreaterThanOrEqual(bytes);
  });

  it('keeps the last entries behind a snapshot, so that a follower a little behind gets entries, not the snapshot', async () => {
    await using cluster = await TestCluster.start();
    const leader = await cluster.waitForLeader();
    const near = cluster.followers(leader)[0]!.id;
    await cluster.stopNode(near);
    for (let i = 0; i < 5; i++) await leader.propose(put(`near-${i}`, 'v'));
    const commit = leader.status().commitIndex;
    await cluster.waitForApplied(commit, [leader.id, cluster.followers(leader)[0]!.id]);
    const taken = await leader.takeSnapshot({ retainEntries: 20 });
    expect(taken?.index).toBe(commit);
    const status = leader.status();
    expect(status.snapshotIndex).toBe(commit);
    // The log keeps the last 20 entries (all of them here: the log is shorter).
    expect(status.firstIndex).toBe(1);
    for (let i = 0; i < 30; i++) await leader.propose(put(`more-${i}`, 'v'));
    await cluster.waitForApplied(leader.status().commitIndex, [leader.id]);
    const second = await leader.takeSnapshot({ retainEntries: 20 });
    expect(leader.status().firstIndex).toBe(second!.index - 20 + 1);
    expect(cluster.disk(leader.id).log?.snapshot.index).toBe(second!.index - 20);
    // The stopped follower missed more than the 20 kept: it needs the snapshot.
    const installed: unknown[] = [];
    const restarted = await cluster.startNode(near);
    restarted.on('snapshot', (event) => installed.push(event));
    await cluster.waitForApplied(leader.status().commitIndex);
    expect(installed).toHaveLength(1);
    // A follower 10 entries behind gets those entries.
    await cluster.stopNode(near);
    for (let i = 0; i < 10; i++) await leader.propose(put(`few-${i}`, 'v'));
    await leader.takeSnapshot({ retainEntries: 20 });
    const again = await cluster.startNode(near);
    const more: unknown[] = [];
    again.on('snapshot', (event) => more.push(event));
    await cluster.waitForApplied(leader.status().commitIndex);
    expect(more).toEqual([]);
    expect(cluster.disk(near).stateMachine.get('few-9')).toBe('v');
    // After a restart, the leader's log starts at its snapshot (the kept entries are dropped).
    const latest = leader.status().snapshotIndex;
    await cluster.stopNode(leader.id);
    const back = await cluster.startNode(leader.id);
    expect(back.status().firstIndex).toBe(latest + 1);
  });

  it('taking a snapshot blocks neither proposals nor applying: they go on while it is saved', async () => {
    await using cluster = await TestCluster.start({ size: 1 });
    const node = await cluster.waitForLeader();
    for (let i = 0; i < 5; i++) await node.propose(put(`k${i}`, 'v'));
    // The snapshot's save waits until the test lets it go on.
    let release = (): void => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const store = cluster.disk(node.id).snapshots!;
    const machine = cluster.disk(node.id).stateMachine;
    const exportSnapshot = machine.exportSnapshot.bind(machine);
    machine.exportSnapshot = async (options) => {
      const exported = await exportSnapshot(options);
      return {
        position: exported.position,
        chunks: (async function* () {
          await held;
          yield* exported.chunks;
        })(),
      };
    };
    const taking = node.takeSnapshot();
    for (let i = 0; i < 20; i++) {
      await expect(node.propose(put(`during-${i}`, 'v'))).resolves.toEqual({
        op: 'put',
        value: 'v',
      });
    }
    expect(machine.get('during-19')).toBe('v');
    expect(store.latest).toBeUndefined();
    release();
    const taken = await taking;
    // The snapshot holds the state as of its index, before the writes made while it was taken.
    expect(taken?.index).toBeLessThan(node.status().appliedIndex);
    expect(node.status().snapshotIndex).toBe(taken?.index);
  });

  it('replication to the other followers goes on while one receives a snapshot', async () => {
    let release = (): void => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tap = new PieceTap();
    const { cluster, leader, lagging, snapshot } = await laggingFollower(tap);
    await using _ = cluster;
    // Every piece of the snapshot waits: the transfer stays under way.
    tap.gate = held;
    await cluster.startNode(lagging);
    const other = cluster.ids.find((id) => id !== leader.id && id !== lagging)!;
    for (let i = 0; i < 10; i++) await leader.propose(put(`meanwhile-${i}`, 'v'));
    await cluster.waitForApplied(leader.status().commitIndex, [leader.id, other]);
    expect(cluster.disk(other).stateMachine.get('meanwhile-9')).toBe('v');
    expect(cluster.node(lagging).status().appliedIndex).toBeLessThan(snapshot.index);
    release();
    await cluster.waitForApplied(leader.status().commitIndex);
    expect(cluster.disk(lagging).stateMachine.get('meanwhile-9')).toBe('v');
  });
});
