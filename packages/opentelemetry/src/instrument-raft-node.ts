import {
  type Attributes,
  type BatchObservableResult,
  type Meter,
  metrics,
} from '@opentelemetry/api';
import type {
  RaftNode,
  RaftNodeEvents,
  RaftNodeStatus,
  RaftSupervisor,
  RaftSupervisorStatus,
  Role,
} from '@tsraft/core';

/** The name (and default meter name) this package reports under. */
export const INSTRUMENTATION_NAME = '@tsraft/opentelemetry';

/** Every role a node can have, for the `raft.role` state set. */
const ROLES = [
  'follower',
  'pre-candidate',
  'candidate',
  'leader',
] as const satisfies readonly Role[];

/** Options of {@link instrumentRaftNode}. */
export interface InstrumentRaftNodeOptions {
  /** Where the instruments are created. Default: `metrics.getMeter('@tsraft/opentelemetry')`. */
  readonly meter?: Meter;
  /** Attributes added to every measurement, besides `raft.node` (the node's id). Default: none. */
  readonly attributes?: Attributes;
}

/** A node or a supervisor of one: what {@link instrumentRaftNode} watches. */
export type InstrumentedSource<Command, Result> =
  | RaftNode<Command, Result>
  | RaftSupervisor<Command, Result>;

/** What {@link instrumentRaftNode} returns: stop reporting (listeners and callbacks removed). */
export interface RaftNodeInstrumentation extends Disposable {
  close(): void;
}

type Listeners = { [E in keyof RaftNodeEvents]?: (...args: RaftNodeEvents[E]) => void };

/**
 * Reports a node's metrics through the OpenTelemetry API, to whatever SDK and exporter the app
 * set up (Prometheus, OTLP, ...); without an SDK every call is a no-op. Works for a `RaftNode`
 * and for a `RaftSupervisor` (its gauges then follow the running incarnation and report nothing
 * while it recovers). Every measurement carries `raft.node` and `attributes`.
 *
 * Gauges, read at each collection from `status()`: `raft.term`, `raft.role` (1 for the current
 * role, 0 for the others, attribute `raft.role`), `raft.commit_index`, `raft.applied_index`,
 * `raft.last_index`, `raft.snapshot_index`, and on the leader `raft.replication.lag` (entries
 * a peer's log lacks, attribute `raft.peer`; none for a peer refused for its identity, whose log
 * is unknown).
 *
 * Counters and histograms, from the node's events: `raft.proposals` (attribute
 * `raft.proposal.outcome`: applied, rejected, failed) and `raft.proposal.duration`; `raft.reads`
 * (`raft.read.consistency`, `raft.read.ok`) and `raft.read.duration`; `raft.elections` (this node
 * became a candidate); `raft.leader_changes`; `raft.persist.duration` and `raft.persist.entries`;
 * `raft.apply.duration` and `raft.apply.entries`; `raft.snapshot.duration` and
 * `raft.snapshot.size` (attribute `raft.snapshot.cause`: taken, installed). Durations in ms.
 */
export function instrumentRaftNode<Command, Result>(
  source: InstrumentedSource<Command, Result>,
  options: InstrumentRaftNodeOptions = {},
): RaftNodeInstrumentation {
  const meter = options.meter ?? metrics.getMeter(INSTRUMENTATION_NAME);
  const base: Attributes = { ...options.attributes, 'raft.node': nodeIdOf(source) };
  const with_ = (extra: Attributes): Attributes => ({ ...base, ...extra });

  const gauges = {
    term: meter.createObservableGauge('raft.term', { description: 'The current term' }),
    role: meter.createObservableGauge('raft.role', {
      description: '1 for the role this node has, 0 for the others',
    }),
    commit: meter.createObservableGauge('raft.commit_index', {
      description: 'The highest log index known to be committed',
    }),
    applied: meter.createObservableGauge('raft.applied_index', {
      description: 'The highest log index applied to the state machine',
    }),
    last: meter.createObservableGauge('raft.last_index', {
      description: "The index of the last entry of this node's log",
    }),
    snapshot: meter.createObservableGauge('raft.snapshot_index', {
      description: 'The index of the latest snapshot',
    }),
    lag: meter.createObservableGauge('raft.replication.lag', {
      description: "On the leader: entries of the leader's log a peer does not hold yet",
      unit: '{entry}',
    }),
  };
  const observe = (result: BatchObservableResult): void => {
    const status = runningStatus(source);
    if (status === undefined) return;
    result.observe(gauges.term, status.term, base);
    for (const role of ROLES) {
      result.observe(gauges.role, role === status.role ? 1 : 0, with_({ 'raft.role': role }));
    }
    result.observe(gauges.commit, status.commitIndex, base);
    result.observe(gauges.applied, status.appliedIndex, base);
    result.observe(gauges.last, status.lastIndex, base);
    result.observe(gauges.snapshot, status.snapshotIndex, base);
    if (status.role === 'leader') {
      for (const [peer, progress] of Object.entries(status.progress)) {
        // A peer refused for its identity holds what it holds, unknown: no lag is observed.
        if (peer === status.id || progress.match === null) continue;
        const lag = Math.max(0, status.lastIndex - progress.match);
        result.observe(gauges.lag, lag, with_({ 'raft.peer': peer }));
      }
    }
  };
  meter.addBatchObservableCallback(observe, Object.values(gauges));

  const ms = { unit: 'ms' };
  const proposals = meter.createCounter('raft.proposals', { description: 'propose() calls' });
  const proposalDuration = meter.createHistogram('raft.proposal.duration', ms);
  const reads = meter.createCounter('raft.reads', { description: 'read() calls' });
  const readDuration = meter.createHistogram('raft.read.duration', ms);
  const elections = meter.createCounter('raft.elections', {
    description: 'Elections this node started (it became a candidate)',
  });
  const leaderChanges = meter.createCounter('raft.leader_changes', {
    description: 'Changes of the leader this node knows (including to none)',
  });
  const persistDuration = meter.createHistogram('raft.persist.duration', ms);
  const persistEntries = meter.createHistogram('raft.persist.entries', { unit: '{entry}' });
  const applyDuration = meter.createHistogram('raft.apply.duration', ms);
  const applyEntries = meter.createHistogram('raft.apply.entries', { unit: '{entry}' });
  const snapshotDuration = meter.createHistogram('raft.snapshot.duration', ms);
  const snapshotSize = meter.createHistogram('raft.snapshot.size', { unit: 'By' });

  const listeners: Listeners = {
    proposal: ({ outcome, durationMs }) => {
      const attributes = with_({ 'raft.proposal.outcome': outcome });
      proposals.add(1, attributes);
      proposalDuration.record(durationMs, attributes);
    },
    read: ({ consistency, ok, durationMs }) => {
      const attributes = with_({ 'raft.read.consistency': consistency, 'raft.read.ok': ok });
      reads.add(1, attributes);
      readDuration.record(durationMs, attributes);
    },
    'role-change': ({ role }) => {
      if (role === 'candidate') elections.add(1, base);
    },
    'leader-change': () => leaderChanges.add(1, base),
    persist: ({ entries, durationMs }) => {
      persistDuration.record(durationMs, base);
      persistEntries.record(entries, base);
    },
    apply: ({ entries, durationMs }) => {
      // An installed snapshot moves the applied index without a batch: the snapshot reports it.
      if (entries === 0) return;
      applyDuration.record(durationMs, base);
      applyEntries.record(entries, base);
    },
    snapshot: ({ cause, bytes, durationMs }) => {
      const attributes = with_({ 'raft.snapshot.cause': cause });
      snapshotDuration.record(durationMs, attributes);
      snapshotSize.record(bytes, attributes);
    },
  };
  const on = source.on.bind(source) as (event: string, listener: never) => unknown;
  const off = source.off.bind(source) as (event: string, listener: never) => unknown;
  for (const [event, listener] of Object.entries(listeners)) on(event, listener as never);

  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    meter.removeBatchObservableCallback(observe, Object.values(gauges));
    for (const [event, listener] of Object.entries(listeners)) off(event, listener as never);
  };
  return { close, [Symbol.dispose]: close };
}

function nodeIdOf<C, R>(source: InstrumentedSource<C, R>): string {
  return source.status().id;
}

/** The node's status, or `undefined` while a supervisor recovers or after it closed. */
function runningStatus<C, R>(source: InstrumentedSource<C, R>): RaftNodeStatus | undefined {
  const status: RaftNodeStatus | RaftSupervisorStatus = source.status();
  // A supervisor's status has a `state`; only a running one carries the node's fields.
  const state = (status as { state?: RaftSupervisorStatus['state'] }).state;
  if (state !== undefined && state !== 'running') return undefined;
  const running = status as RaftNodeStatus;
  return running.closed ? undefined : running;
}
