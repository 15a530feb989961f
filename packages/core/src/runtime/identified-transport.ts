import type { NodeId } from '../log-entry.ts';
import type { PeerHandler, PeerRequest, PeerResponse, Transport } from '../transport.ts';
import type { IdentityGate } from './identity-gate.ts';

/**
 * The node's transport as its parts use it: every request leaves with this node's identity
 * (see {@link IdentityGate.outgoing}), and what comes back is checked. A `raft` answer whose
 * sender is refused rejects, as an unreachable peer does (its messages, votes and
 * acknowledgements never reach the engine); a refusal of this node's identity is reported.
 */
export function identifiedTransport(
  transport: Transport,
  gate: IdentityGate,
  isLeader: () => boolean,
): Transport {
  return {
    async request(
      to: NodeId,
      request: PeerRequest,
      options: { signal: AbortSignal },
    ): Promise<PeerResponse> {
      const identity = gate.outgoing(to, isLeader());
      const response = await transport.request(to, { ...request, identity }, options);
      if (response.type === 'raft') {
        const admission = gate.admit(to, response.identity);
        if (!admission.ok) throw new Error(`refused the answer of ${to}: ${admission.message}`);
      } else if (response.type === 'rejected' && response.reason === 'refused') {
        gate.refusedBy(to, response.message);
      }
      return response;
    },
    listen: (handler: PeerHandler) => transport.listen(handler),
    ...(transport.updatePeers === undefined
      ? {}
      : {
          updatePeers: (addresses: Readonly<Record<NodeId, string>>) =>
            transport.updatePeers?.(addresses),
        }),
    ...(transport.close === undefined
      ? {}
      : { close: () => transport.close?.() ?? Promise.resolve() }),
  };
}
