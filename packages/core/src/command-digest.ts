import { createHash } from 'node:crypto';

/**
 * SHA-256 (hex) of a command's canonical JSON: object keys sorted, `undefined` members left out,
 * so that the same command gives the same digest on every node and for every spelling of it.
 * State machines store it with a client session's result, to tell a retry of a command (same
 * digest) from another command that reuses its stamp (see `ClientSessions`).
 */
export function commandDigest(command: unknown): string {
  return createHash('sha256').update(canonicalJson(command)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return canonicalJson(toJSON.call(value));
    const record = value as Record<string, unknown>;
    const members = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
