import { initTRPC, TRPCError } from '@trpc/server';
import type { Message, NodeId, PeerHandler, PeerRequest, PeerResponse } from '@tsraft/core';
import { z } from 'zod';
import { proposeInput, raftInput, snapshotInput } from './peer-schemas.ts';

/** What every peer procedure knows about its request, once the request is authenticated. */
export interface PeerContext {
  /** This node. */
  readonly nodeId: NodeId;
  /** The authenticated sender. */
  readonly from: NodeId;
  readonly handler: PeerHandler;
}

/**
 * The package's own tRPC instance, never merged into a user's router. Its procedures are called
 * by the peer server (`callPeerProcedure`), which decodes the wire encoding (`peer-wire.ts`) and
 * formats errors itself, without a stack trace.
 */
const t = initTRPC.context<PeerContext>().create({ isServer: true });

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
    const request: PeerRequest = {
      type: 'raft',
      messages: input.messages,
      ...(input.reply === true ? { reply: true } : {}),
      ...(input.identity === undefined ? {} : { identity: input.identity }),
    };
    return serve(ctx, request, signal);
  }),
  propose: t.procedure.input(proposeInput).mutation(({ ctx, input, signal }) =>
    serve(
      ctx,
      {
        type: 'propose',
        envelope: input.envelope,
        ...(input.identity === undefined ? {} : { identity: input.identity }),
      },
      signal,
    ),
  ),
  snapshot: t.procedure.input(snapshotInput).mutation(({ ctx, input, signal }) => {
    checkAddressing(ctx, input.message);
    const { message, chunk, identity } = input;
    return serve(
      ctx,
      { type: 'snapshot', message, chunk, ...(identity === undefined ? {} : { identity }) },
      signal,
    );
  }),
});

const createCaller = t.createCallerFactory(router);

/** The names of the peer procedures: one per {@link PeerRequest} type. */
export type PeerProcedure = PeerRequest['type'];

/** Whether `name` names a peer procedure. */
export function isPeerProcedure(name: string): name is PeerProcedure {
  return Object.hasOwn(router._def.procedures, name);
}

/**
 * Calls the procedure `name` as tRPC does for an HTTP request: validates `input` (as it arrived,
 * unwrapped from the wire envelope) against the procedure's schema, checks addressing, and hands
 * it to the context's handler. Rejects with a `TRPCError`: BAD_REQUEST for an invalid input (see
 * {@link peerErrorMessage}), INTERNAL_SERVER_ERROR when the handler throws.
 */
export async function callPeerProcedure(
  ctx: PeerContext,
  name: PeerProcedure,
  input: unknown,
  signal: AbortSignal,
): Promise<PeerResponse> {
  try {
    return await createCaller(ctx, { signal })[name](input as never);
  } catch (error) {
    throw error instanceof TRPCError
      ? error
      : new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: messageOf(error), cause: error });
  }
}

/** What an error answer says about `error`: what is wrong with the request, never a stack. */
export function peerErrorMessage(error: TRPCError): string {
  if (!(error.cause instanceof z.ZodError)) return error.message;
  const issues = error.cause.issues;
  // A request with thousands of bad messages must not get a megabyte of explanation back.
  const shown = new z.ZodError(issues.slice(0, MAX_REPORTED_ISSUES));
  const more = issues.length - shown.issues.length;
  return `invalid request: ${z.prettifyError(shown)}${more > 0 ? `\n(and ${more} more issues)` : ''}`;
}

/** How many validation issues an error answer lists at most. */
const MAX_REPORTED_ISSUES = 10;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
