/**
 * The software update point role (issue 5, part 3): `cairn sup`, and
 * in-process in `cairn start` as the site's update point `local`. It holds
 * its own catalog store (`catalog-store.ts`), syncs it when the site asks
 * (from the upstream the site names, from its own `--upstream`/`--apt`, or,
 * for a replica, from the site's first update point), and serves the store
 * over the same incremental protocol as `cairn upstream` (ADR 0004) to
 * replicas, child sites and clients' scans.
 *
 * Authentication: the site's control calls (`/sup/v1/status`, `/sup/v1/sync`)
 * are signed with the key issued by `cairn admin sup add` (the HMAC scheme
 * of `src/dp/protocol.ts`), and every answer to them carries the proof
 * header. The catalog routes and `/sup/v1/version` are anonymous, like a
 * DP's content: the catalog is public metadata, and clients have no key for
 * the update point (ADR 0007).
 *
 * One sync at a time: a sync request while one runs joins it. A sync killed
 * with the process leaves the store's published content version where it
 * was (rows of the unfinished sync sit above it and are never served); the
 * next sync completes it. Logs: `<data>/logs/SoftwareDistribution.log`.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { importCatalog } from '../catalog/catalog-import.ts';
import { normaliseSourceSpec, sourceFromSpec } from '../catalog/source-spec.ts';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import { listenUrl } from '../shared/listen.ts';
import { CairnError, ERRORS, describeError, isCairnError } from '../shared/errors.ts';
import { NonceCache, PROOF_HEADER, proveResponse, verifyRequest } from '../dp/protocol.ts';
import { MAX_PAGE_SIZE, parseAnchor, parseCursor, parseLimit, UPSTREAM_PREFIX } from '../upstream/protocol.ts';
import type { ChangesReply, ItemKind } from '../upstream/protocol.ts';
import { catalogServerApp } from '../upstream/upstream-server.ts';
import { openCatalogStore, SUP_STORE_SITE } from './catalog-store.ts';
import { MAX_REJECTED_LISTED, SUP_PREFIX } from './protocol.ts';
import { PAGE_CURSOR_HEADER, PAGE_MEDIA_TYPE, PAGE_SHA256_HEADER } from './catalog-pack.ts';
import type { SupRejected, SupStatus, SupSyncState } from './protocol.ts';

export interface SupOptions {
  readonly dataDir: string;
  /** The key the site signs its control calls with. */
  readonly key: string;
  readonly name?: string;
  /** This update point's own upstream (`http(s)://…` or `apt:<folder>`), used when the site names none. */
  readonly upstream?: string;
  readonly logEcho?: boolean;
  /** Items per page when this update point syncs (tests use small pages). */
  readonly pageSize?: number;
}

const idleState = (): SupSyncState => ({ syncId: '', state: 'idle', source: '', full: false, phase: '', processed: 0, total: 0, line: '', startedAt: '', endedAt: '', rejectedItems: [] });

export async function buildSupServer(opts: SupOptions): Promise<FastifyInstance> {
  const dataDir = path.resolve(opts.dataDir);
  const name = opts.name ?? 'sup';
  const ownUpstream = normaliseSourceSpec(opts.upstream ?? '');
  const log = createComponentLog({ dir: path.join(dataDir, 'logs'), name: 'SoftwareDistribution', component: 'CAIRN_SUP', echo: opts.logEcho ?? false });
  const store = await openCatalogStore(dataDir);
  log.info(`Software update point '${name}' starting; catalog ${store.catalogId} at content version ${await store.contentVersion()}; upstream ${ownUpstream || '(named by the site)'}`);

  /** Builds scanners' pages ahead of them; a failure costs only that the first scanner builds them. */
  async function prebuild(version: number, previous: number): Promise<void> {
    if (version <= 0) return;
    const t0 = Date.now();
    try {
      let pages = await store.prebuild(0, version, MAX_PAGE_SIZE);
      if (previous > 0 && previous < version) pages += await store.prebuild(previous, version, MAX_PAGE_SIZE);
      log.info(`Prepared ${pages} catalog page(s) of content version ${version} for scanners in ${Date.now() - t0} ms`);
    } catch (err) {
      log.warn(`Could not prepare the catalog pages of content version ${version} for scanners (they are built when first asked for): ${describeError(err)}`);
    }
  }
  void store.contentVersion().then((v) => prebuild(v, 0));

  let state: SupSyncState = idleState();
  let running: Promise<void> | undefined;

  function startSync(sourceSpec: string, full: boolean): SupSyncState {
    if (running) {
      log.info(`Synchronization requested while synchronization ${state.syncId} runs: joined it`);
      return state;
    }
    const spec = normaliseSourceSpec(sourceSpec) || ownUpstream;
    const syncId = randomBytes(8).toString('hex');
    const rejectedItems: SupRejected[] = [];
    state = { ...idleState(), syncId, state: 'running', source: spec, full, startedAt: new Date().toISOString() };
    log.info(`Synchronization ${syncId} started by the site (${full ? 'full' : 'delta'}) from ${spec || '(none)'}`);
    running = (async () => {
      try {
        if (!spec) throw new CairnError('CAIRN_SYNC_NO_UPSTREAM', `neither the site nor update point '${name}' names an upstream`);
        const source = sourceFromSpec(spec, opts.pageSize ? { pageSize: opts.pageSize } : {});
        const r = await importCatalog(store.database.db, source, {
          siteCode: SUP_STORE_SITE,
          full,
          onPhase: (phase, total) => {
            state = { ...state, phase, processed: 0, total, line: '' };
            log.info(`Synchronizing ${phase} from ${source.url}: ${total} changed`);
          },
          onProgress: (p) => {
            state = { ...state, phase: p.phase, processed: p.processed, total: p.total, line: p.line };
          },
          onRejected: (x) => {
            log.warn(`Rejected ${x.phase} ${x.id}: ${x.code}: ${x.reason}`);
            if (rejectedItems.length < MAX_REJECTED_LISTED) rejectedItems.push(x);
          },
        });
        // The store's own change rows (migration 0006's triggers) have no reader here.
        await store.database.db.deleteFrom('ChangeNotifications').execute();
        // Scanners' pages of the new version, built before the sync is reported done (ADR 0011): the whole
        // catalog for new clients, and the changes since the last version for clients that scanned it.
        await prebuild(r.contentVersion, r.previousContentVersion);
        const rejected = r.categories.rejected + r.updates.rejected + r.rejectedAtSource;
        state = {
          ...state,
          state: 'succeeded',
          endedAt: new Date().toISOString(),
          rejectedItems,
          result: { source: r.source, full: r.full, itemsChanged: r.itemsChanged, categories: r.categories.processed, updates: r.updates.processed, rejected, previousContentVersion: r.previousContentVersion, contentVersion: r.contentVersion },
        };
        log.info(`Synchronization ${syncId} completed successfully: ${r.itemsChanged} item(s) changed, ${rejected} rejected, content version ${r.contentVersion}`);
      } catch (err) {
        const code = isCairnError(err) ? err.code : 'CAIRN_INTERNAL';
        state = { ...state, state: 'failed', endedAt: new Date().toISOString(), rejectedItems, error: { code, message: describeError(err) } };
        log.error(`Synchronization ${syncId} failed: ${describeError(err)}`);
      } finally {
        running = undefined;
      }
    })();
    return state;
  }

  const app = catalogServerApp(log, 'see logs/SoftwareDistribution.log on the update point');

  // Anonymous: the catalog, over the upstream protocol (replicas, child sites, clients' scans).
  app.get(`${UPSTREAM_PREFIX}/changes`, async (request): Promise<ChangesReply> => {
    const reply = await store.changes(parseAnchor((request.query as Record<string, unknown>).anchor));
    log.info(`Catalog requested by ${request.ip}: ${reply.full ? 'full' : 'changes'} up to ${reply.anchor}: ${reply.categories} categories, ${reply.updates} updates`);
    return reply;
  });
  const pageRoute = (kind: ItemKind) =>
    app.get(`${UPSTREAM_PREFIX}/${kind}`, async (request, reply) => {
      const q = request.query as Record<string, unknown>;
      const until = parseAnchor(q.until);
      if (!until) throw new CairnError('CAIRN_CATALOG_ANCHOR_INVALID', 'until is required: send the anchor /changes returned');
      if (until.catalogId !== store.catalogId) throw new CairnError('CAIRN_CATALOG_CHANGED', `the anchor is not of catalog ${store.catalogId}; sync again`);
      const given = parseAnchor(q.since);
      const since = given && given.catalogId === store.catalogId ? given.seq : 0;
      if (kind === 'updates' && (request.headers.accept ?? '').includes(PAGE_MEDIA_TYPE)) {
        // A scanner: the page built once for every client that asks (ADR 0011); replicas and child sites get the JSON page.
        const page = await store.builtPage(since, until.seq, parseCursor(q.cursor), parseLimit(q.limit));
        void reply.type(PAGE_MEDIA_TYPE).header(PAGE_SHA256_HEADER, page.sha256).header(PAGE_CURSOR_HEADER, page.next === null ? '' : String(page.next));
        return page.bytes;
      }
      void reply.type('application/json');
      return store.page(kind, since, until.seq, parseCursor(q.cursor), parseLimit(q.limit));
    });
  pageRoute('categories');
  pageRoute('updates');
  app.get(`${SUP_PREFIX}/version`, async () => ({ catalogId: store.catalogId, contentVersion: await store.contentVersion() }));

  // Signed by the site.
  await app.register(
    async (sup) => {
      const nonces = new NonceCache();
      const requestNonces = new WeakMap<FastifyRequest, string>();
      sup.addHook('onRequest', async (request, reply) => {
        const pathWithQuery = request.raw.url ?? '';
        if (pathWithQuery === `${SUP_PREFIX}/version`) return undefined;
        const result = verifyRequest(opts.key, request.headers.authorization, request.method, pathWithQuery, nonces);
        if (!result.ok) {
          log.warn(`Rejected ${request.method} ${pathWithQuery.slice(0, 200)} from ${request.ip}: ${result.reason}`);
          return reply.code(401).send({ code: result.code, message: `${ERRORS[result.code].message}: ${result.reason}` });
        }
        requestNonces.set(request, result.nonce);
        return undefined;
      });
      sup.addHook('onSend', async (request, reply, payload) => {
        const nonce = requestNonces.get(request);
        if (nonce) reply.header(PROOF_HEADER, proveResponse(opts.key, nonce, reply.statusCode));
        return payload;
      });
      sup.get('/status', async (): Promise<SupStatus> => ({ name, catalogId: store.catalogId, contentVersion: await store.contentVersion(), upstream: ownUpstream }));
      sup.post('/sync', async (request, reply) => {
        const q = request.query as Record<string, unknown>;
        const source = typeof q.source === 'string' ? q.source : '';
        if (q.full !== undefined && q.full !== '0' && q.full !== '1') throw new CairnError('CAIRN_REQUEST_INVALID', 'full must be 0 or 1');
        return reply.code(202).send(startSync(source, q.full === '1'));
      });
      sup.get('/sync', async () => state);
    },
    { prefix: SUP_PREFIX },
  );

  app.addHook('onClose', async () => {
    // A sync in progress is abandoned: its rows stay above the published version until the next sync.
    if (running) log.warn(`Stopping during synchronization ${state.syncId}; the next synchronization completes it`);
    await store.close().catch(() => undefined);
    log.info(`Software update point '${name}' stopped`);
  });
  return app;
}

export interface RunningSup {
  readonly url: string;
  close(): Promise<void>;
}

export async function startSup(opts: SupOptions & { port: number; host?: string }): Promise<RunningSup> {
  const app = await buildSupServer(opts);
  return { url: await listenUrl(app, opts.port, opts.host ?? '127.0.0.1'), close: () => app.close() };
}
