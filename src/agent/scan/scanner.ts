/**
 * The scanner (issue 6, part 3; spec 30 §3; seeds 002/003, the Windows
 * Update agent's and WUAHandler's part of a scan): brings the shared catalog
 * cache to the content version the scan requires, evaluates every update's
 * rules against one machine, prunes superseded updates and classifies the
 * rest. One scanner per process; each scan is one client's.
 *
 * States (docs/catalog.md, "Evaluation"), from the two rules of an update:
 *
 * | isApplicable | isInstalled | state |
 * | --- | --- | --- |
 * | holds | does not | required (missing) |
 * | does not | holds | installed |
 * | does not | does not | not required |
 * | holds | holds | unknown: the rules contradict each other |
 *
 * and unknown, with the reason, for an update that failed validation at the
 * client or whose evaluation failed. Pruning: an update superseded by another
 * valid update of the catalog is dropped ("update id X is superseded by Y");
 * two updates that supersede each other are both kept.
 *
 * Speed (bench/scan.ts): everything that depends only on the catalog is done
 * once per catalog version and shared by every client: supersedence, the
 * not-required results, an index of updates by the packages their rules need
 * installed, and rules compiled with their versions parsed (at their first
 * evaluation, so only the updates some machine's packages name). A machine then
 * evaluates only the updates that name one of its packages (and the few whose
 * rules can hold without any package), which is the "evaluated applicability
 * rules of M out of K deployed entities" of the seed's line.
 *
 * Logs (request.log, the client's Scanner.log; docs/troubleshooting.md,
 * "Scanner (Scanner.log)"): criteria and search start (UC13), the update
 * point contacted and the "found N updates …" line (UC14), search completed
 * (UC15), pruning lines, one line per installed, missing or unknown update
 * (never per not-required one), scan completed (UC16).
 *
 * It never throws on a machine it does not understand; its only errors are
 * the catalog cache's (update point unreachable, content version too old).
 */
import type http from 'node:http';
import { compileRule, prepareMachine } from '../../catalog/rules.ts';
import type { CompiledRule, Machine, PreparedMachine } from '../../catalog/rules.ts';
import { describeError } from '../../shared/errors.ts';
import { createCatalogCache } from './catalog-cache.ts';
import type { CachedCatalog, CachedUpdate, CatalogCache, RefreshResult } from './catalog-cache.ts';
import { readBody } from '../../sup/catalog-pack.ts';
import type { ScanRequest, ScanResult, Scanner, UpdateScanResult, UpdateStateName } from './types.ts';

/** The seed's search criteria, logged as the product logs it (UC13). */
export const SCAN_CRITERIA = "(DeploymentAction=* AND Type='Software')";

/**
 * What the scanner derives from one catalog version, shared by every scan of
 * it. Two arrays by position rather than an object per update: a catalog of
 * 60,000 updates is indexed at every agent start.
 */
interface CatalogIndex {
  /** The catalog's updates (page entries), in catalog order. */
  readonly sources: readonly CachedUpdate[];
  /** Each one's result when it is not required (unknown with the reason for a bad one): the same frozen object for every machine. */
  readonly results: readonly UpdateScanResult[];
  /** Entries whose rules can hold with none of their packages installed (and bad ones): evaluated on every machine. */
  readonly always: readonly number[];
  /** Entries by the package names their rules need (one of) installed. */
  readonly byPackage: ReadonlyMap<string, readonly number[]>;
  /** Entry index → the ID of the update that supersedes it. */
  readonly prunedBy: ReadonlyMap<number, string>;
  readonly pruned: readonly { readonly id: string; readonly supersededBy: string }[];
}

/** An update's rules compiled, or why its body cannot be evaluated. */
type Compiled = { readonly applicable: CompiledRule; readonly installed: CompiledRule } | { readonly bad: string };

/** Compiled rules by page entry: an update unchanged between two catalog versions is parsed and compiled once, when first evaluated. */
const compiledRules = new WeakMap<CachedUpdate, Compiled>();

function compile(e: CachedUpdate): Compiled {
  let c = compiledRules.get(e);
  if (!c) {
    // The body is validated here, at its first evaluation (issue 6, part 9: a bad one is unknown with the reason).
    const item = readBody(e);
    if (!item.ok) c = { bad: `${item.code}: ${item.reason}` };
    else {
      try {
        c = { applicable: compileRule(item.value.isApplicable), installed: compileRule(item.value.isInstalled) };
      } catch (err) {
        c = { bad: `evaluation failed: ${describeError(err)}` };
      }
    }
    compiledRules.set(e, c);
  }
  return c;
}

function buildIndex(catalog: CachedCatalog): CatalogIndex {
  const sources: CachedUpdate[] = [];
  const results: UpdateScanResult[] = [];
  const always: number[] = [];
  const byPackage = new Map<string, number[]>();
  const position = new Map<string, number>();
  const add = (name: string, k: number): void => {
    const list = byPackage.get(name);
    if (list) list.push(k);
    else byPackage.set(name, [k]);
  };
  for (const cu of catalog.updates.values()) {
    const k = sources.length;
    sources.push(cu);
    position.set(cu.id, k);
    if (cu.bad === null) {
      results.push(Object.freeze({ id: cu.id, revision: cu.revision, title: cu.title, articleId: cu.articleId, products: cu.products, classification: cu.classification, state: 'notRequired' as const }));
      const need = cu.needs;
      if (need === null) always.push(k);
      else if (need.includes(' ')) for (const name of need.split(' ')) add(name, k);
      else add(need, k);
    } else {
      results.push(Object.freeze({ id: cu.id, revision: cu.revision, title: cu.title, articleId: cu.articleId, products: [], classification: '', state: 'unknown' as const, reason: cu.bad }));
      always.push(k);
    }
  }
  // Supersedence among the valid updates of the catalog; two updates superseding each other prune neither.
  const prunedBy = new Map<number, string>();
  for (const by of sources) {
    if (by.bad !== null) continue;
    for (const s of by.supersedes) {
      const k = position.get(s);
      if (k === undefined || prunedBy.has(k)) continue;
      const other = sources[k]!;
      if (other.bad === null && other.supersedes.includes(by.id)) continue;
      prunedBy.set(k, by.id);
    }
  }
  const pruned = [...prunedBy.entries()].sort((a, b) => a[0] - b[0]).map(([k, by]) => Object.freeze({ id: sources[k]!.id, supersededBy: by }));
  return { sources, results, always, byPackage, prunedBy, pruned };
}

const STATE_WORD: Readonly<Record<UpdateStateName, string>> = { installed: 'Installed', required: 'Missing', notRequired: 'Not required', unknown: 'Unknown' };

export interface ScannerOptions {
  readonly cacheDir: string;
  readonly httpAgent?: http.Agent;
  /** Items per page asked of update points (tests use small pages). */
  readonly pageSize?: number;
  /** Per request to an update point; default 60 s. */
  readonly timeoutMs?: number;
}

/** The process's scanner, with the catalog cache it shares between clients (exposed for tests and the bench). */
export interface ProcessScanner extends Scanner {
  readonly cache: CatalogCache;
}

export function createScanner(options: ScannerOptions): ProcessScanner {
  const cache = createCatalogCache({
    dir: options.cacheDir,
    ...(options.httpAgent ? { httpAgent: options.httpAgent } : {}),
    ...(options.pageSize ? { pageSize: options.pageSize } : {}),
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
  });
  const indexes = new WeakMap<CachedCatalog, CatalogIndex>();
  const prepared = new WeakMap<Machine, PreparedMachine>();

  const indexOf = (c: CachedCatalog): CatalogIndex => {
    let ix = indexes.get(c);
    if (!ix) {
      ix = buildIndex(c);
      indexes.set(c, ix);
    }
    return ix;
  };

  /** The machine prepared once (simulated clients of one facts entry share one machine object). */
  const prepare = (m: Machine, log: ScanRequest['log']): PreparedMachine => {
    let p = prepared.get(m);
    if (!p) {
      try {
        p = prepareMachine(m);
      } catch (err) {
        log.warn(`The machine's inventory cannot be read (${describeError(err)}); scanning it as a machine with no packages, facts or OS`);
        p = prepareMachine({});
      }
      if (typeof m === 'object' && m !== null) prepared.set(m, p);
    }
    return p;
  };

  function logRefresh(log: ScanRequest['log'], req: ScanRequest, r: RefreshResult): void {
    const c = r.catalog;
    if (r.how === 'cached') {
      log.info(`Catalog ${c.catalogId} is cached at content version ${c.contentVersion} (required ${req.requiredContentVersion}); ${req.location.url} need not be contacted`);
    } else if (r.how === 'joined') {
      log.info(`Joined the download of catalog ${c.catalogId} from ${req.location.url} another client started; now at content version ${c.contentVersion}`);
    } else if (r.previousContentVersion === c.contentVersion && !r.full) {
      log.info(`Update point ${req.location.serverName} (${req.location.url}) has no changes since content version ${c.contentVersion}`);
    } else {
      log.info(
        `Downloaded ${r.full ? 'the whole catalog' : `the changes since content version ${r.previousContentVersion}`} ${c.catalogId} from ${req.location.url}: ${r.updatesChanged} update(s) and ${r.categoriesChanged} categor${r.categoriesChanged === 1 ? 'y' : 'ies'}, now at content version ${c.contentVersion}`,
      );
      if (r.rejected) log.warn(`${r.rejected} update(s) of this download failed validation on this client; they are reported unknown with the reason`);
      if (r.invalidAtUpdatePoint) log.warn(`${r.invalidAtUpdatePoint} update(s) of this download are marked invalid by the update point; they are reported unknown with the reason`);
      if (r.unusable) log.warn(`${r.unusable} item(s) of this download have no usable ID and were dropped`);
    }
  }

  return {
    cache,
    async scan(req: ScanRequest): Promise<ScanResult> {
      const log = req.log;
      // UC13: criteria, search started (seed: WUAHandler.log, step 1).
      log.info('Scan results will not include updates superseded by another update of the catalog');
      log.info(`Search Criteria is ${SCAN_CRITERIA}; update source {${req.updateSourceId.replace(/^\{|\}$/g, '').toUpperCase()}}, required content version ${req.requiredContentVersion}`);
      log.info(`Async searching of updates using update point ${req.location.serverName} (${req.location.url}) started`);
      // UC14: the update point's catalog, incrementally.
      log.info(`Contacting update point ${req.location.url} for catalog content version ${req.requiredContentVersion} or later`);
      let r: RefreshResult;
      try {
        r = await cache.refresh(req.location.url, req.requiredContentVersion, { wanted: req.location.contentVersion, ...(req.signal ? { signal: req.signal } : {}) });
      } catch (err) {
        log.error(`Search against ${req.location.url} failed: ${describeError(err)}`);
        throw err;
      }
      logRefresh(log, req, r);
      const catalog = r.catalog;
      const ix = indexOf(catalog);
      const m = prepare(req.machine, log);

      // Evaluate the candidates: updates that name an installed package, and those that name none.
      const states = new Map<number, { state: UpdateStateName; reason?: string }>();
      const candidates = new Set<number>(ix.always);
      for (const name of m.packages.keys()) for (const k of ix.byPackage.get(name) ?? []) candidates.add(k);
      for (const k of candidates) {
        const e = ix.sources[k]!;
        if (e.bad !== null) {
          states.set(k, { state: 'unknown', reason: e.bad });
          continue;
        }
        try {
          const c = compile(e);
          if ('bad' in c) {
            states.set(k, { state: 'unknown', reason: c.bad });
            continue;
          }
          const a = c.applicable(m);
          const i = c.installed(m);
          if (a && i) states.set(k, { state: 'unknown', reason: 'the rules contradict each other: isApplicable and isInstalled both hold on this machine' });
          else if (a) states.set(k, { state: 'required' });
          else if (i) states.set(k, { state: 'installed' });
        } catch (err) {
          states.set(k, { state: 'unknown', reason: `evaluation failed: ${describeError(err)}` });
        }
      }
      const foundCategories = new Set<string>();
      for (const k of states.keys()) {
        const e = ix.sources[k]!;
        if (e.bad !== null) continue;
        for (const c of e.products) foundCategories.add(c);
        foundCategories.add(e.classification);
      }
      log.info(`Found ${states.size} updates and ${foundCategories.size} categories in search; evaluated applicability rules of ${candidates.size} out of ${ix.sources.length} deployed entities`);
      // UC15.
      log.info('Async searching completed.');
      log.info('Finished searching everything in single call.');

      // UC16: pruning, then one line per found update, then done.
      for (const [k] of states) {
        const by = ix.prunedBy.get(k);
        if (by !== undefined) log.info(`Pruning: update id (${ix.sources[k]!.id}) is superseded by (${by}).`);
      }
      const updates: UpdateScanResult[] = [];
      const counts = { installed: 0, required: 0, notRequired: 0, unknown: 0 };
      for (let k = 0; k < ix.results.length; k += 1) {
        if (ix.prunedBy.has(k)) continue;
        const r = ix.results[k]!;
        const s = states.get(k);
        if (!s) {
          updates.push(r);
          counts.notRequired += 1;
          continue;
        }
        counts[s.state] += 1;
        updates.push({ ...r, state: s.state, ...(s.reason !== undefined ? { reason: s.reason } : {}) });
        log.info(`Update (${STATE_WORD[s.state]}): ${r.title} (${r.id}, ${r.revision})${s.reason !== undefined ? `: ${s.reason}` : ''}`);
      }
      log.info(
        `Successfully completed scan at content version ${catalog.contentVersion}: ${counts.required} required, ${counts.installed} installed, ${counts.notRequired} not required, ${counts.unknown} unknown, ${ix.pruned.length} pruned as superseded`,
      );
      return {
        contentVersion: catalog.contentVersion,
        updatePoint: req.location.url,
        updates,
        pruned: ix.pruned,
        categories: foundCategories.size,
        evaluated: candidates.size,
        total: ix.sources.length,
      };
    },
  };
}
