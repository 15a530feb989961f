/**
 * @packageDocumentation
 * Snapshot policy, chunked snapshot transfer and snapshot tooling. Its first code comes with the log-compaction issue.
 */
export {};
