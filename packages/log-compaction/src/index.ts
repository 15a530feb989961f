/**
 * @packageDocumentation
 * Log compaction for tsraft: the compaction policy ({@link CompactionPolicy}), the snapshot file format (`tsraft-snapshot/1`: a snapshot's bytes
 * framed with its metadata and checksums, read and written as streams) and the `tsraft-snapshot`
 * tool (the package's `bin`). See the README for the design and the operator runbook.
 */
export {
  SNAPSHOT_FILE_FORMAT,
  type SnapshotFileEnd,
  SnapshotFileError,
  type SnapshotFileHeader,
  type SnapshotFileProblem,
  type SnapshotFileSource,
} from './file/snapshot-file-format.ts';
export {
  type OpenSnapshotFileOptions,
  openSnapshotFile,
  type SnapshotFileReader,
} from './file/snapshot-file-reader.ts';
export { type WriteSnapshotFileOptions, writeSnapshotFile } from './file/snapshot-file-writer.ts';
export {
  type CompactableNode,
  CompactionPolicy,
  type CompactionPolicyOptions,
} from './policy/compaction-policy.ts';
