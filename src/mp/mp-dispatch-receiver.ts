/**
 * The site's end of a remote MP's file dispatch (spec 30 §4 step 2; UC22;
 * docs/adr/0006-mp-server.md): `POST /mp/v1/dispatch/{kind}/{name}` with the
 * file's bytes, signed by the MP with the key the site issued at
 * `cairn admin mp add NAME` (HMAC over method, path, body hash, timestamp
 * and nonce, as the relay key scheme of ADR 0003; header `x-cairn-mp: NAME`).
 *
 * The file is parsed before it is accepted (a report, a status-message file,
 * a policy provider trigger) and written into the site's inbox under the
 * same name, atomically; writing a name twice is harmless because every
 * reader is idempotent by file name or content. 200 means "in the inbox":
 * only then may the MP delete its copy. Logged in `MP_Relay.log`.
 */
import type { Kysely } from 'kysely';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { refusalHandler } from '../shared/refusals.ts';
import { CairnError, describeError, isCairnError } from '../shared/errors.ts';
import { writeInboxFile } from '../shared/inbox.ts';
import { MAX_REPORT_BYTES, parseStateReport } from '../shared/state-report.ts';
import { parseSvf } from '../shared/status-message.ts';
import { NonceCache, verifyRequest } from '../dp/protocol.ts';
import type { Database } from '../datastore/schema.ts';
import { findManagementPoint, touchManagementPoint } from '../datastore/management-points.ts';
import { signedPath } from './state-relay.ts';

export const DISPATCH_ROUTE = '/v1/dispatch/:kind/:name';
export const MP_NAME_HEADER = 'x-cairn-mp';
/** What a remote MP dispatches: its outbox, the file extension, and the site inbox it goes to. */
export const DISPATCH_KINDS = ['state', 'status', 'policypv'] as const;
export type DispatchKind = (typeof DISPATCH_KINDS)[number];
export const DISPATCH_EXTENSION: Readonly<Record<DispatchKind, string>> = Object.freeze({ state: 'SMX', status: 'SVF', policypv: 'CLI' });

export interface DispatchReceiverOptions {
  readonly db: Kysely<Database>;
  readonly log: ComponentLog;
  readonly inboxes: Readonly<Record<DispatchKind, string>>;
  readonly onFile: (kind: DispatchKind) => void;
}

type RawRequest = FastifyRequest<{ Body: Buffer; Params: { kind: string; name: string } }>;

function validate(kind: DispatchKind, name: string, body: Buffer): void {
  const bad = (why: string): never => {
    throw new CairnError('CAIRN_MP_FILE_INVALID', `${name}: ${why}`);
  };
  if (!new RegExp(`^[A-Za-z0-9_{}-][A-Za-z0-9._{}-]{0,120}\\.${DISPATCH_EXTENSION[kind]}$`).test(name)) bad(`a ${kind} file is named <name>.${DISPATCH_EXTENSION[kind]}`);
  try {
    if (kind === 'state') parseStateReport(body.toString('utf8'));
    else if (kind === 'status') parseSvf(body.toString('utf8'));
    else if (body.length > 4096) bad('a policy provider trigger is a few bytes');
  } catch (err) {
    if (isCairnError(err) && err.code === 'CAIRN_MP_FILE_INVALID') throw err;
    bad(describeError(err));
  }
}

export const mpDispatchReceiver: FastifyPluginAsync<DispatchReceiverOptions> = async (app: FastifyInstance, opts: DispatchReceiverOptions) => {
  const nonces = new NonceCache();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  app.setErrorHandler(refusalHandler({ logFor: () => opts.log, caller: (request) => `management point ${String(request.headers[MP_NAME_HEADER] ?? '?')}` }));

  app.post(DISPATCH_ROUTE, { bodyLimit: MAX_REPORT_BYTES }, async (request: RawRequest) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const mpName = request.headers[MP_NAME_HEADER];
    if (typeof mpName !== 'string' || !mpName) throw new CairnError('CAIRN_AUTH_MISSING', `no ${MP_NAME_HEADER} header`);
    const mp = await findManagementPoint(opts.db, mpName);
    if (!mp) throw new CairnError('CAIRN_AUTH_INVALID', `no management point is registered as ${mpName.slice(0, 64)}`);
    const v = verifyRequest(mp.SharedKey, request.headers.authorization, request.method, signedPath(request.url, body), nonces);
    if (!v.ok) throw new CairnError(v.code, v.reason);
    const kind = request.params.kind as DispatchKind;
    if (!DISPATCH_KINDS.includes(kind)) throw new CairnError('CAIRN_MP_FILE_INVALID', `kind ${kind.slice(0, 20)} is not ${DISPATCH_KINDS.join(', ')}`);
    const name = request.params.name;
    validate(kind, name, body);
    await writeInboxFile(opts.inboxes[kind], name, body);
    await touchManagementPoint(opts.db, Number(mp.MPID));
    opts.log.info(`Received ${name} (${body.length} bytes) from management point ${mp.Name}; wrote it to ${opts.inboxes[kind]}.`);
    opts.onFile(kind);
    return { file: name };
  });
};
