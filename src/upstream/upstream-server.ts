/**
 * `cairn upstream`: an upstream update catalog server (ARCHITECTURE.md, "One
 * product, several roles") that a site's update point syncs from, the way a
 * top-level site syncs from the vendor's update service (seed 004, step 3).
 * It serves a catalog folder (docs/catalog.md) over the incremental protocol
 * of `protocol.ts` (docs/adr/0004-catalog-protocol.md).
 *
 * It owns its state folder (the change index and `logs/upstream.log`). It
 * never writes to the catalog folder, and never holds the catalog's contents
 * in memory: pages are read from the files by position. It does not validate
 * items beyond "a JSON object with an id": the site validates what it
 * imports, so one malformed update is rejected there with its ID.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fastify } from 'fastify';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import { listenUrl } from '../shared/listen.ts';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError, ERRORS, describeError, isCairnError } from '../shared/errors.ts';
import { CatalogIndex } from './catalog-index.ts';
import { formatAnchor, parseAnchor, parseCursor, parseLimit, UPSTREAM_PREFIX } from './protocol.ts';
import type { ChangesReply, ItemKind } from './protocol.ts';

export interface UpstreamOptions {
  /** The catalog folder: `categories.ndjson` and `updates/*.ndjson`. */
  readonly catalogDir: string;
  /** Where the change index and log live; default `<catalogDir>/.cairn-upstream`. */
  readonly stateDir?: string;
  /** Echo the log to stdout (foreground `cairn upstream`). */
  readonly logEcho?: boolean;
}

type Query = Record<string, unknown>;

/**
 * A fastify instance with the error answers every catalog server gives (the
 * upstream here, and a software update point): a CairnError with its code, a
 * malformed request as CAIRN_REQUEST_INVALID, anything else logged and
 * answered CAIRN_INTERNAL with where to look (`internalHint`).
 */
export function catalogServerApp(log: ComponentLog, internalHint: string): FastifyInstance {
  const app = fastify({
    logger: false,
    forceCloseConnections: 'idle',
    frameworkErrors: (err: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      void reply.code(ERRORS.CAIRN_REQUEST_INVALID.status).send(new CairnError('CAIRN_REQUEST_INVALID', err.message).toJSON());
    },
  });
  app.setErrorHandler((err: FastifyError | CairnError, request, reply) => {
    if (isCairnError(err)) {
      if (err.status >= 500 || err.code === 'CAIRN_CATALOG_CHANGED') log.warn(`${request.method} ${request.url} failed: ${describeError(err)}`);
      return reply.code(err.status).send(err.toJSON());
    }
    const status = err.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) return reply.code(400).send(new CairnError('CAIRN_REQUEST_INVALID', err.message).toJSON());
    log.error(`${request.method} ${request.url} failed: ${describeError(err)}`);
    return reply.code(500).send(new CairnError('CAIRN_INTERNAL', internalHint).toJSON());
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(new CairnError('CAIRN_NOT_FOUND', `${request.method} ${request.url.slice(0, 200)}`).toJSON()));
  return app;
}

export async function buildUpstreamServer(opts: UpstreamOptions): Promise<FastifyInstance> {
  // Checked before the log is created: the default state folder is inside the catalog folder.
  const st = await fsp.stat(opts.catalogDir).catch(() => undefined);
  if (!st?.isDirectory()) throw new CairnError('CAIRN_CATALOG_FOLDER_INVALID', `${path.resolve(opts.catalogDir)} is not a folder`);
  const stateDir = path.resolve(opts.stateDir ?? path.join(opts.catalogDir, '.cairn-upstream'));
  const log = createComponentLog({ dir: path.join(stateDir, 'logs'), name: 'upstream', component: 'CAIRN_UPSTREAM', echo: opts.logEcho ?? false });
  const index = await CatalogIndex.open(opts.catalogDir, stateDir, log);
  log.info(`Serving catalog ${index.catalogId} from ${path.resolve(opts.catalogDir)} at sequence ${index.seq}`);

  const app = catalogServerApp(log, 'see logs/upstream.log on the upstream server');

  app.get(`${UPSTREAM_PREFIX}/changes`, async (request): Promise<ChangesReply> => {
    const q = request.query as Query;
    const given = parseAnchor(q.anchor);
    await index.refresh();
    const full = !given || given.catalogId !== index.catalogId || given.seq > index.seq;
    const since = full ? 0 : given.seq;
    const reply: ChangesReply = {
      catalogId: index.catalogId,
      full,
      anchor: formatAnchor({ catalogId: index.catalogId, seq: index.seq }),
      categories: index.count('categories', since, index.seq),
      updates: index.count('updates', since, index.seq),
      rejected: index.rejected,
    };
    log.info(`Sync from ${request.ip}: ${full ? 'full' : `since ${given.seq}`} up to ${index.seq}: ${reply.categories} categories, ${reply.updates} updates changed`);
    return reply;
  });

  const pageRoute = (kind: ItemKind) =>
    app.get(`${UPSTREAM_PREFIX}/${kind}`, async (request, reply) => {
      const q = request.query as Query;
      const until = parseAnchor(q.until);
      if (!until) throw new CairnError('CAIRN_CATALOG_ANCHOR_INVALID', 'until is required: send the anchor /changes returned');
      if (until.catalogId !== index.catalogId || until.seq > index.seq) throw new CairnError('CAIRN_CATALOG_CHANGED', `the anchor ${formatAnchor(until)} is not of catalog ${index.catalogId} at or before ${index.seq}; sync again`);
      const given = parseAnchor(q.since);
      const since = given && given.catalogId === index.catalogId ? given.seq : 0;
      await index.refresh();
      const page = await index.page(kind, since, until.seq, parseCursor(q.cursor), parseLimit(q.limit));
      // The items are the catalog's own JSON lines, already checked to parse: join them rather than re-encode.
      void reply.type('application/json');
      return `{"items":[${page.items.join(',')}],"cursor":${page.cursor === null ? 'null' : `"${page.cursor}"`}}`;
    });
  pageRoute('categories');
  pageRoute('updates');

  app.addHook('onClose', async () => log.info('Upstream server stopped'));
  return app;
}

export interface RunningUpstream {
  readonly url: string;
  close(): Promise<void>;
}

export async function startUpstream(opts: UpstreamOptions & { port: number; host?: string }): Promise<RunningUpstream> {
  const app = await buildUpstreamServer(opts);
  return { url: await listenUrl(app, opts.port, opts.host ?? '127.0.0.1'), close: () => app.close() };
}
