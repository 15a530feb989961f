import type { ClusterConfig } from '@tsraft/core';

/**
 * The snapshot file format, version 1 (see the package README for the full description):
 *
 * ```text
 * magic   "TSRAFT-SNAPSHOT\n"
 * frames  kind u8 ('H' | 'D' | 'E'), length u32 BE, crc32 u32 BE (of the payload), payload
 * ```
 *
 * One `H` frame (JSON {@link SnapshotFileHeader}), the snapshot's bytes as `D` frames, one `E`
 * frame (JSON {@link SnapshotFileEnd}), nothing after it.
 */
export const SNAPSHOT_FILE_FORMAT = 'tsraft-snapshot/1';

/** The first bytes of every snapshot file, whatever its version. */
export const SNAPSHOT_FILE_MAGIC: Uint8Array = new TextEncoder().encode('TSRAFT-SNAPSHOT\n');

/** Frame kinds, as their byte. */
export const FRAME_KIND = {
  header: 0x48, // 'H'
  data: 0x44, // 'D'
  end: 0x45, // 'E'
} as const;

/** Bytes of a frame's kind, length and CRC-32. */
export const FRAME_PREFIX_BYTES = 9;

/** The largest payload a frame may have; a reader refuses a longer one (a damaged length). */
export const MAX_FRAME_BYTES: number = 64 * 1024 * 1024;

/** Bytes per `D` frame the writer produces unless told otherwise. */
export const DEFAULT_FRAME_BYTES: number = 1024 * 1024;

/** Where the snapshot in a file came from. */
export type SnapshotFileSource =
  /** Exported from a node's snapshot store. */
  | { readonly kind: 'export'; readonly snapshotId?: number; readonly schema?: string }
  /** Made from a node's existing tables to start a new cluster. */
  | { readonly kind: 'seed'; readonly schema?: string };

/** The `H` frame: what snapshot the file holds. */
export interface SnapshotFileHeader {
  readonly format: typeof SNAPSHOT_FILE_FORMAT;
  /** Index and term of the last entry the snapshot covers. */
  readonly index: number;
  readonly term: number;
  /** The cluster configuration as of `index`. */
  readonly config: ClusterConfig;
  /** When the file was written (ISO 8601). */
  readonly createdAt: string;
  readonly source: SnapshotFileSource;
  /** Bytes of the snapshot, when known before writing (checked against the end frame). */
  readonly size?: number;
  /** SHA-256 of the snapshot (hex), when known before writing (checked against the end frame). */
  readonly sha256?: string;
}

/** The `E` frame: what the `D` frames held. */
export interface SnapshotFileEnd {
  readonly size: number;
  readonly sha256: string;
  readonly frames: number;
}

/** Why a file was refused. */
export type SnapshotFileProblem = 'corrupt' | 'unsupported';

/**
 * A snapshot file that cannot be read: damaged, truncated or not a snapshot file (`corrupt`), or
 * of a version this reader does not know (`unsupported`). The message says which check failed.
 */
export class SnapshotFileError extends Error {
  override name = 'SnapshotFileError';
  readonly problem: SnapshotFileProblem;

  constructor(problem: SnapshotFileProblem, message: string, options?: ErrorOptions) {
    super(message, options);
    this.problem = problem;
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Checks the header JSON of a file.
 *
 * @throws SnapshotFileError `unsupported` for another format version, `corrupt` for a header
 * that lacks a field or holds a wrong one.
 */
export function parseHeader(value: unknown): SnapshotFileHeader {
  const h = value as Partial<Record<keyof SnapshotFileHeader, unknown>> | null;
  if (h === null || typeof h !== 'object') {
    throw new SnapshotFileError('corrupt', 'the header is not a JSON object');
  }
  if (h.format !== SNAPSHOT_FILE_FORMAT) {
    throw new SnapshotFileError(
      'unsupported',
      `the file is in format ${JSON.stringify(h.format)}; this tool reads ${SNAPSHOT_FILE_FORMAT} ` +
        '(a newer tsraft-snapshot wrote it? use that version)',
    );
  }
  const fail = (what: string): never => {
    throw new SnapshotFileError('corrupt', `the header's ${what}`);
  };
  if (!isPosition(h.index)) fail('index is not a non-negative integer');
  if (!isPosition(h.term)) fail('term is not a non-negative integer');
  if (!isConfig(h.config)) fail('config is not a cluster configuration');
  if (typeof h.createdAt !== 'string') fail('createdAt is not a string');
  const source = h.source as { kind?: unknown } | null | undefined;
  if (
    typeof source !== 'object' ||
    source === null ||
    !['export', 'seed'].includes(String(source.kind))
  ) {
    fail('source is not {"kind":"export"|"seed"}');
  }
  if (h.size !== undefined && !isPosition(h.size)) fail('size is not a non-negative integer');
  if (h.sha256 !== undefined && !(typeof h.sha256 === 'string' && SHA256_HEX.test(h.sha256))) {
    fail('sha256 is not 64 lower-case hex digits');
  }
  return h as SnapshotFileHeader;
}

/**
 * Checks the end frame's JSON.
 *
 * @throws SnapshotFileError `corrupt` when a field is missing or wrong.
 */
export function parseEnd(value: unknown): SnapshotFileEnd {
  const e = value as Partial<Record<keyof SnapshotFileEnd, unknown>> | null;
  if (
    e === null ||
    typeof e !== 'object' ||
    !isPosition(e.size) ||
    !isPosition(e.frames) ||
    typeof e.sha256 !== 'string' ||
    !SHA256_HEX.test(e.sha256)
  ) {
    throw new SnapshotFileError('corrupt', 'the end frame lacks a size, SHA-256 or frame count');
  }
  return e as SnapshotFileEnd;
}

function isPosition(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isConfig(value: unknown): value is ClusterConfig {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as Record<string, unknown>;
  const ids = (list: unknown): boolean =>
    Array.isArray(list) && list.every((id) => typeof id === 'string' && id.length > 0);
  return (
    ids(c.voters) &&
    (c.outgoingVoters === undefined || ids(c.outgoingVoters)) &&
    (c.learners === undefined || ids(c.learners))
  );
}
