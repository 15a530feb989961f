import { type AnyTRPCRouter, initTRPC, TRPCError } from '@trpc/server';
import type { Message, NodeId, PeerHandler, PeerRequest, PeerResponse } from '@tsraft/core';
import { z } from 'zod';
import { proposeInput, raftInput, snapshotInput } from './peer-schemas.ts';
import { peerTransformer } from './peer-wire.ts';

/** What every peer procedure knows about its request, once the request is authenticated. */
export interface PeerContext {
  /** This node. */
  readonly nodeId: NodeId;
  /** The authenticated sender. */
  readonly from: NodeId;
  readonly handler: PeerHandler;
}

/**
 * The package's own tRPC instance. It is never merged into a user's router: its transformer is the
 * package's own wire encoding (`peer-wire.ts`), and its errors never carry a stack trace (`isDev: false`, and the
 * formatter drops `stack` whatever the environment says).
 */
const t = initTRPC.context<PeerContext>().create({
  transformer: peerTransformer,
  isDev: false,
  isServer: true,
  errorFormatter: ({ shape, error }) => {
    const { stack: _stack, ...data } = shape.data;
    const message =
      error.cause instanceof z.ZodError
        ? `invalid request: ${z.prettifyError(error.cause)}`
        : error.cause instanceof SyntaxError
          ? `malformed JSON: ${shape.message}`
          : shape.message;
    return { ...shape, message, data };
  },
});

const neverAborted = new AbortController().signal;

function serve(
  ctx: PeerContext,
  request: PeerRequest,
  signal: AbortSignal | undefined,
): Promise<PeerResponse> {
  return ctx.handler(ctx.from, request, { signal: signal ?? neverAborted });
}

/** Refuses a message whose sender is not the authenticated peer, or that is not for this node. */
function checkAddressing(ctx: PeerContext, message: Message): void {
  if (message.from !== ctx.from) {
    throw new TRPCError({
      code: 'BAD_REQUEST',
      message: `a ${message.type} message names sender "${message.from}", but the request comes from "${ctx.from}"`,
    });
  }
  if (message.to !== ctx.nodeId) {
    throw new TRPCError({
      code: 'BAD_REQUEST',
      message: `a ${message.type} message is addressed to "${message.to}", not to this node "${ctx.nodeId}"`,
    });
  }
}

/** One mutation per {@link PeerRequest} type. */
const router = t.router({
  raft: t.procedure.input(raftInput).mutation(({ ctx, input, signal }) => {
    for (const message of input.messages) checkAddressing(ctx, message);
    return serve(ctx, { type: 'raft', messages: input.messages }, signal);
  }),
  propose: t.procedure
    .input(proposeInput)
    .mutation(({ ctx, input, signal }) =>
      serve(ctx, { type: 'propose', envelope: input.envelope }, signal),
    ),
  snapshot: t.procedure.input(snapshotInput).mutation(({ ctx, input, signal }) => {
    checkAddressing(ctx, input.message);
    return serve(ctx, { type: 'snapshot', message: input.message, data: input.data }, signal);
  }),
});

/**
 * The router of the peer procedures. Typed loosely on purpose: its precise type is big, and
 * clients call it through tRPC's untyped client (the procedure is the request's `type`) and check
 * every answer against `peerResponse`.
 */
export const peerRouter: AnyTRPCRouter = router;
