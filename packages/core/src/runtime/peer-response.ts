import type { PeerResponse } from '../transport.ts';

/** A peer's answer in words, for errors and logs. */
export function describeResponse(response: PeerResponse): string {
  return response.type === 'rejected'
    ? `rejected (${response.reason}): ${response.message}`
    : response.type;
}
