/**
 * One error handler for the routes that clients and site systems call (the
 * MP's client routes, the relay, the MP dispatch receiver): a CairnError
 * answers with its code and HTTP status; fastify's own refusals (a body over
 * the route's limit, a malformed one) with ours; anything else is logged as
 * an error and answers CAIRN_INTERNAL without details, since these routes
 * answer anyone. Every refusal is logged with the caller's address.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ComponentLog } from './cmtrace-log.ts';
import { ERRORS, describeError, isCairnError } from './errors.ts';
import type { ErrorCode } from './errors.ts';

export interface RefusalOptions {
  /** The log a request's refusal goes to (a server with several endpoints has one each). */
  readonly logFor: (request: FastifyRequest) => ComponentLog;
  /** The code and message for a body over the route's limit; default CAIRN_REQUEST_TOO_LARGE. */
  readonly tooLarge?: (request: FastifyRequest) => { readonly code: ErrorCode; readonly message?: string };
  /** Said after the caller's address in the log line, e.g. which management point called. */
  readonly caller?: (request: FastifyRequest) => string;
}

export function refusalHandler(opts: RefusalOptions): (err: unknown, request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  return async (err, request, reply) => {
    const log = opts.logFor(request);
    let code: ErrorCode;
    let message: string;
    if (isCairnError(err)) {
      code = err.code;
      message = err.message;
    } else if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const t = opts.tooLarge?.(request) ?? { code: 'CAIRN_REQUEST_TOO_LARGE' as const };
      code = t.code;
      message = t.message ?? ERRORS[code].message;
    } else if ((err as { statusCode?: number }).statusCode && (err as { statusCode: number }).statusCode < 500) {
      code = 'CAIRN_REQUEST_INVALID';
      message = (err as Error).message;
    } else {
      log.error(`Unexpected error in ${request.method} ${request.url}: ${describeError(err)}`);
      return reply.code(500).send({ code: 'CAIRN_INTERNAL', message: ERRORS.CAIRN_INTERNAL.message });
    }
    log.warn(`Refused ${request.method} ${request.url} from ${request.ip}${opts.caller ? ` (${opts.caller(request)})` : ''}: ${code}: ${message}`);
    const serverTime = (err as { serverTime?: unknown }).serverTime;
    return reply.code(ERRORS[code].status).send({ code, message, ...(typeof serverTime === 'number' ? { serverTime } : {}) });
  };
}
