import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CorruptSnapshotError } from '../errors.ts';
import type { LogEntry, LogPosition } from '../log-entry.ts';
import type { SnapshotMeta } from '../message.ts';
import type { AppliedEntry, CommandResult } from '../state-machine.ts';
import { readBytes } from '../testing/byte-streams.ts';
import { InProcessNetwork } from '../testing/in-process-transport.ts';
import { type KvCommand, type KvResult, KvStateMachine } from '../testing/kv-state-machine.ts';
import { MemoryLogStore } from '../testing/memory-log-store.ts';
import { MemorySnapshotStore } from '../testing/memory-snapshot-store.ts';
import { jsonCodec, toAppliedEntry } from './command-codec.ts';
import { RaftNode } from './raft-node.ts';

// Installing a snapshot a leader sends (Raft paper 7) on a follower whose apply loop is busy or
// whose state machine refuses the snapshot. A hand-driven leader `l` talks to the follower `f`
// over the in-process network, so each step happens exactly when the test says.

const CONFIG = { voters: ['l', 'f', 'x'] };
const codec = jsonCodec<KvCommand, KvResult>();

/** A key-value state machine whose `apply` waits while `gate` is set. */
class GatedKv extends KvStateMachine {
  gate: Promise<void> | undefined;
  applying = false;
  refuseRestore = false;

  override async apply(
    entries: readonly AppliedEntry<KvCommand>[],
  ): Promise<(CommandResult<KvResult> | undefined)[]> {
    this.applying = true;
    await this.gate;
    this.applying = false;
    return super.apply(entries);
  }

  override async restoreSnapshot(
    position: LogPosition,
    chunks: AsyncIterable<Uint8Array>,
  ): Promise<void> {
    if (this.refuseRestore) {
      for await (const _ of chunks) {
        // Read whole, then refuse, as a state machine whose table set differs would.
      }
      throw new CorruptSnapshotError('the snapshot holds tables this state machine does not');
    }
    return super.restoreSnapshot(position, chunks);
  }
}

function put(index: number): LogEntry {
  const envelope = { command: { op: 'put', key: `k${index}`, value: `v${index}` }, timestamp: 1 };
  return { index, term: 1, type: 'command', data: codec.encode(envelope as never) };
}

/** The bytes of a key-value snapshot at index `upTo`: keys k1..k<upTo>. */
async function snapshotBytes(upTo: number): Promise<Uint8Array> {
  const kv = new KvStateMachine();
  const entries = Array.from({ length: upTo }, (_, i) => put(i + 1));
  await kv.apply(entries.map((entry) => toAppliedEntry(codec, entry)));
  const { chunks } = await kv.exportSnapshot();
  return readBytes(chunks);
}

async function setup() {
  const network = new InProcessNetwork();
  const leader = network.transport('l');
  leader.listen(async () => ({ type: 'ack' }));
  network.transport('x').listen(async () => ({ type: 'ack' }));
  const disk = {
    log: new MemoryLogStore().durable,
    snapshots: new MemorySnapshotStore().durable,
    stateMachine: new GatedKv(),
  };
  const start = () =>
    RaftNode.start<KvCommand, KvResult>({
      id: 'f',
      config: CONFIG,
      logStore: new MemoryLogStore({ durable: disk.log }),
      snapshotStore: new MemorySnapshotStore({ durable: disk.snapshots }),
      stateMachine: disk.stateMachine,
      transport: network.transport('f'),
      tickMs: 5,
      // The hand-driven leader sends no heartbeats: the follower must not campaign meanwhile.
      tuning: { electionTicks: 100_000, heartbeatTicks: 1 },
      verifySnapshotOnStart: false,
    });
  return { network, leader, disk, start };
}

/** The leader of term 1 replicates entries 1..3 and commits them. */
async function appendThree(leader: ReturnType<InProcessNetwork['transport']>) {
  await leader.request(
    'f',
    {
      type: 'raft',
      messages: [
        {
          type: 'append',
          from: 'l',
          to: 'f',
          term: 1,
          prevIndex: 0,
          prevTerm: 0,
          entries: [put(1), put(2), put(3)],
          commit: 3,
        },
      ],
    },
    { signal: AbortSignal.timeout(5000) },
  );
}

/** Sends the whole snapshot at 10 in one piece; resolves with the follower's answer. */
async function sendSnapshotAtTen(leader: ReturnType<InProcessNetwork['transport']>) {
  const data = await snapshotBytes(10);
  const snapshot: SnapshotMeta = { index: 10, term: 1, config: CONFIG };
  return leader.request(
    'f',
    {
      type: 'snapshot',
      message: { type: 'snapshot', from: 'l', to: 'f', term: 1, snapshot },
      chunk: {
        size: data.byteLength,
        sha256: createHash('sha256').update(data).digest('hex'),
        offset: 0,
        data,
        crc32: crc32(data),
      },
    },
    { signal: AbortSignal.timeout(5000) },
  );
}

/** Polls `condition` every 5 ms for up to 3 s. */
async function waitUntil(condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('installing a received snapshot (Raft paper 7)', () => {
  it('close() while the install waits for the apply loop leaves stores a restart recovers from', async () => {
    const { leader, disk, start } = await setup();
    let open!: () => void;
    disk.stateMachine.gate = new Promise((resolve) => {
      open = resolve;
    });
    const node = await start();
    await appendThree(leader);
    await waitUntil(() => disk.stateMachine.applying);
    const answer = sendSnapshotAtTen(leader).catch((error: unknown) => error);
    // The snapshot is whole and handed to the engine; the install waits for the apply loop.
    await waitUntil(
      async () =>
        (await new MemorySnapshotStore({ durable: disk.snapshots }).latest())?.index === 10,
    );
    const closed = node.close();
    open();
    await closed;
    await answer;

    // Nothing moved the log store past what the state machine holds.
    const log = await new MemoryLogStore({ durable: disk.log }).load();
    const applied = await disk.stateMachine.lastApplied();
    expect({ logStart: log.snapshot.index, applied: applied.index }).toEqual({
      logStart: 0,
      applied: 3,
    });
    // And the node starts again on the same stores, with the snapshot installed.
    const again = await start();
    await using _ = again;
    expect(again.status().appliedIndex).toBe(10);
    expect(disk.stateMachine.get('k10')).toBe('v10');
  });

  it('a copy of the last piece that waited while the install stopped the node is refused, not answered as held (found by the simulator, 5 nodes, seed 17)', async () => {
    const { leader, disk, start } = await setup();
    disk.stateMachine.refuseRestore = true;
    const node = await start();
    await using _ = node;
    await appendThree(leader);
    // The network delivered the last piece twice: the copy waits behind the original, whose
    // install the state machine refuses, which stops the node.
    const [first, copy] = await Promise.all([sendSnapshotAtTen(leader), sendSnapshotAtTen(leader)]);
    expect(node.status().closed).toBe(true);
    expect(first).toMatchObject({ type: 'rejected', reason: 'closed' });
    // The log store never recorded the snapshot: the node must not say it holds it.
    expect(copy).toMatchObject({ type: 'rejected', reason: 'closed' });
    expect((await new MemoryLogStore({ durable: disk.log }).load()).snapshot.index).toBe(0);
  });

  it('a snapshot the state machine refuses leaves the log as it was, also across a restart', async () => {
    const { leader, disk, start } = await setup();
    const node = await start();
    await appendThree(leader);
    await waitUntil(async () => (await disk.stateMachine.lastApplied()).index === 3);
    disk.stateMachine.refuseRestore = true;
    const fatal = new Promise<Error>((resolve) =>
      node.once('fatal', ({ error }) => resolve(error)),
    );
    await sendSnapshotAtTen(leader);
    const error = await fatal;
    await node.close();

    const entriesKept = async () => {
      const store = new MemoryLogStore({ durable: disk.log });
      const state = await store.load();
      return { logStart: state.snapshot.index, lastIndex: state.lastIndex };
    };
    expect(await entriesKept()).toEqual({ logStart: 0, lastIndex: 3 });
    // The next start refuses it again, and still keeps the log.
    const restart = await start().catch((failure: unknown) => failure);
    expect(await entriesKept()).toEqual({ logStart: 0, lastIndex: 3 });
    expect(restart).toBeInstanceOf(Error);
    expect((restart as Error).message).toMatch(/refused the snapshot at 10/);
    expect(error.message).toMatch(/refused the snapshot at 10/);
    // Once the state machine accepts it (the upgrade finished), the node starts from it.
    disk.stateMachine.refuseRestore = false;
    const again = await start();
    await using _ = again;
    expect(again.status().appliedIndex).toBe(10);
    expect(disk.stateMachine.get('k10')).toBe('v10');
  });
});

describe('a node needs a snapshot store', () => {
  it('refuses to start without one, saying why, because any node may have to receive a snapshot', async () => {
    const { network, disk } = await setup();
    const options: Omit<
      Parameters<typeof RaftNode.start<KvCommand, KvResult>>[0],
      'snapshotStore'
    > = {
      id: 'f',
      config: CONFIG,
      logStore: new MemoryLogStore({ durable: disk.log }),
      stateMachine: disk.stateMachine,
      transport: network.transport('f'),
    };
    const started = await RaftNode.start<KvCommand, KvResult>(
      options as Parameters<typeof RaftNode.start<KvCommand, KvResult>>[0],
    ).catch((error: unknown) => error);
    if (started instanceof RaftNode) await started.close();
    expect(started).toBeInstanceOf(TypeError);
    expect((started as Error).message).toMatch(/snapshotStore is required/);
    // Nothing was written.
    expect((await new MemoryLogStore({ durable: disk.log }).load()).hardState.term).toBe(0);
  });
});
