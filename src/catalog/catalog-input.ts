/**
 * Validation of catalog input at the edge (STYLE.md, convention 5): whatever
 * an upstream sends, or a catalog file holds, becomes a typed `Category`,
 * `Update` or `Rule` here, or is rejected with a `CAIRN_CATALOG_*` code and
 * the item's ID. One malformed item never rejects its page: the caller gets
 * a `CatalogItem` per input and counts the rejected ones.
 *
 * It must never let an unknown field change meaning silently: unknown fields
 * are ignored (forward compatibility), but every known field is checked for
 * type, range and form. Rules are bounded in depth and size so that a
 * hostile catalog cannot make a client's evaluation explode.
 */
import { CairnError, describeError, isCairnError } from '../shared/errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { CATEGORY_TYPES, SEVERITIES } from './catalog.ts';
import type { CatalogItem, Category, CategoryType, Severity, Update } from './catalog.ts';
import { debianVersionError, VERSION_OPERATORS } from './dpkg-version.ts';
import type { VersionOperator } from './dpkg-version.ts';
import { FACT_OPERATORS, RULE_KINDS } from './rules.ts';
import type { Rule, VersionTest } from './rules.ts';

/** Deepest nesting of all/any/not a rule may have. */
export const MAX_RULE_DEPTH = 16;
/** Most checks (nodes) one rule may hold. */
export const MAX_RULE_NODES = 1000;
const MAX_TEXT = 4000;
const MAX_LIST = 1000;

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DATE_RE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;
const CVE_RE = /^CVE-\d{4}-\d{4,}$/;
/** Debian package names (policy 5.6.1) and architectures. */
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCH_RE = /^[a-z0-9][a-z0-9-]*$/;

type Obj = Record<string, unknown>;

class Path {
  constructor(
    readonly code: ErrorCode,
    readonly id: string,
  ) {}
  fail(field: string, why: string): never {
    throw new CairnError(this.code, `${this.id}: ${field} ${why}`);
  }
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(p: Path, o: Obj, field: string, opts: { optional?: boolean; empty?: boolean; max?: number } = {}): string {
  const v = o[field];
  if (v === undefined && opts.optional) return '';
  if (typeof v !== 'string') p.fail(field, 'must be a string');
  if (!opts.empty && !v.trim()) p.fail(field, 'must not be empty');
  if (v.length > (opts.max ?? MAX_TEXT)) p.fail(field, `is longer than ${opts.max ?? MAX_TEXT} characters`);
  return v;
}

function guid(p: Path, v: unknown, field: string): string {
  if (typeof v !== 'string' || !GUID_RE.test(v)) p.fail(field, `must be a GUID, not '${String(v).slice(0, 60)}'`);
  return v.toLowerCase();
}

function list<T>(p: Path, o: Obj, field: string, each: (v: unknown, where: string) => T, opts: { optional?: boolean; min?: number } = {}): T[] {
  const v = o[field];
  if (v === undefined && opts.optional) return [];
  if (!Array.isArray(v)) p.fail(field, 'must be an array');
  if (v.length > MAX_LIST) p.fail(field, `has more than ${MAX_LIST} entries`);
  if (v.length < (opts.min ?? 0)) p.fail(field, `must have at least ${opts.min} entr${opts.min === 1 ? 'y' : 'ies'}`);
  return v.map((x, i) => each(x, `${field}[${i}]`));
}

function revision(p: Path, o: Obj): number {
  const v = o.revision;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) p.fail('revision', 'must be a positive integer');
  return v;
}

function oneOf<T extends string>(p: Path, v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) p.fail(field, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

function versionValue(p: Path, v: unknown, field: string): string {
  if (typeof v !== 'string') p.fail(field, 'must be a string');
  const why = debianVersionError(v);
  if (why !== undefined) p.fail(field, `is not a Debian version: ${why}`);
  return v.trim();
}

function versionTest(p: Path, v: unknown, field: string): VersionTest {
  if (!isObj(v)) p.fail(field, 'must be an object { op, value }');
  return { op: oneOf<VersionOperator>(p, v.op, `${field}.op`, VERSION_OPERATORS), value: versionValue(p, v.value, `${field}.value`) };
}

/** The id field of a raw item, for error messages, whatever else is wrong with it. */
export function rawItemId(raw: unknown): string {
  return isObj(raw) && typeof raw.id === 'string' ? raw.id.slice(0, 80) : '(no id)';
}

function parseRuleAt(p: Path, v: unknown, field: string, depth: number, budget: { nodes: number }): Rule {
  if (!isObj(v)) p.fail(field, 'must be a rule object');
  budget.nodes += 1;
  if (budget.nodes > MAX_RULE_NODES) p.fail(field, `makes the rule larger than ${MAX_RULE_NODES} checks`);
  const kind = oneOf(p, v.kind, `${field}.kind`, RULE_KINDS);
  switch (kind) {
    case 'all':
    case 'any': {
      if (depth >= MAX_RULE_DEPTH) p.fail(field, `nests deeper than ${MAX_RULE_DEPTH}`);
      const rules = list(p, v, 'rules', (x, w) => parseRuleAt(p, x, `${field}.${w}`, depth + 1, budget));
      return { kind, rules };
    }
    case 'not': {
      if (depth >= MAX_RULE_DEPTH) p.fail(field, `nests deeper than ${MAX_RULE_DEPTH}`);
      return { kind, rule: parseRuleAt(p, v.rule, `${field}.rule`, depth + 1, budget) };
    }
    case 'package': {
      const name = v.name;
      if (typeof name !== 'string' || !PACKAGE_RE.test(name)) p.fail(`${field}.name`, 'must be a Debian package name');
      if (typeof v.installed !== 'boolean') p.fail(`${field}.installed`, 'must be true or false');
      let arch: string | undefined;
      if (v.arch !== undefined) {
        if (typeof v.arch !== 'string' || !ARCH_RE.test(v.arch)) p.fail(`${field}.arch`, 'must be a Debian architecture');
        arch = v.arch;
      }
      if (v.version !== undefined && !v.installed) p.fail(`${field}.version`, 'is only allowed with installed: true');
      const version = v.version === undefined ? undefined : versionTest(p, v.version, `${field}.version`);
      return { kind, name, installed: v.installed, ...(arch === undefined ? {} : { arch }), ...(version ? { version } : {}) };
    }
    case 'fact': {
      const name = str(p, v, 'name', { max: 200 });
      const op = oneOf(p, v.op, `${field}.op`, FACT_OPERATORS);
      if (op === 'in') return { kind, name, op, values: list(p, v, 'values', (x, w) => (typeof x === 'string' ? x : p.fail(`${field}.${w}`, 'must be a string')), { min: 1 }) };
      if (typeof v.value !== 'string') p.fail(`${field}.value`, 'must be a string');
      if (op === 'equals') return { kind, name, op, value: v.value };
      return { kind, name, op, value: versionValue(p, v.value, `${field}.value`) };
    }
    case 'os': {
      const family = str(p, v, 'family', { max: 100 });
      const version = v.version === undefined ? undefined : versionTest(p, v.version, `${field}.version`);
      return { kind, family, ...(version ? { version } : {}) };
    }
  }
}

/** Parses one rule; `id` names the update it belongs to in errors. */
export function parseRule(raw: unknown, id = '(rule)', field = 'rule'): Rule {
  return parseRuleAt(new Path('CAIRN_CATALOG_RULE_INVALID', id), raw, field, 0, { nodes: 0 });
}

export function parseCategory(raw: unknown): Category {
  const p: Path = new Path('CAIRN_CATALOG_CATEGORY_INVALID', rawItemId(raw));
  if (!isObj(raw)) p.fail('category', 'must be a JSON object');
  const id = guid(p, raw.id, 'id');
  const type = oneOf<CategoryType>(p, raw.type, 'type', CATEGORY_TYPES);
  const name = str(p, raw, 'name', { max: 400 });
  const parent = raw.parent === undefined || raw.parent === null ? undefined : guid(p, raw.parent, 'parent');
  return { id, revision: revision(p, raw), type, name, ...(parent ? { parent } : {}) };
}

export function parseUpdate(raw: unknown): Update {
  const p: Path = new Path('CAIRN_CATALOG_UPDATE_INVALID', rawItemId(raw));
  if (!isObj(raw)) p.fail('update', 'must be a JSON object');
  const id = guid(p, raw.id, 'id');
  const releaseDate = str(p, raw, 'releaseDate', { max: 40 });
  if (!DATE_RE.test(releaseDate) || Number.isNaN(Date.parse(releaseDate))) p.fail('releaseDate', 'must be an ISO 8601 date');
  const severity = raw.severity === undefined ? 'Unspecified' : oneOf<Severity>(p, raw.severity, 'severity', SEVERITIES);
  // Rules are checked last and with their own code, so the message says which rule is wrong.
  const base = {
    id,
    revision: revision(p, raw),
    title: str(p, raw, 'title', { max: 1000 }),
    description: str(p, raw, 'description', { optional: true, empty: true }),
    articleId: str(p, raw, 'articleId', { optional: true, empty: true, max: 100 }),
    classification: guid(p, raw.classification, 'classification'),
    products: list(p, raw, 'products', (v, w) => guid(p, v, w), { min: 1 }),
    severity,
    cves: list(p, raw, 'cves', (v, w) => (typeof v === 'string' && CVE_RE.test(v) ? v : p.fail(w, 'must be a CVE ID (CVE-YYYY-NNNN)')), { optional: true }),
    releaseDate,
    supersedes: list(p, raw, 'supersedes', (v, w) => guid(p, v, w), { optional: true }),
  };
  if (base.supersedes.includes(id)) p.fail('supersedes', 'must not name the update itself');
  return {
    ...base,
    isApplicable: parseRule(raw.isApplicable, base.id, 'isApplicable'),
    isInstalled: parseRule(raw.isInstalled, base.id, 'isInstalled'),
  };
}

function item<T>(raw: unknown, parse: (raw: unknown) => T): CatalogItem<T> {
  try {
    return { ok: true, value: parse(raw) };
  } catch (err) {
    if (isCairnError(err)) return { ok: false, id: rawItemId(raw), code: err.code, reason: err.message };
    return { ok: false, id: rawItemId(raw), code: 'CAIRN_INTERNAL', reason: describeError(err) };
  }
}

/** Validates one raw category without throwing. */
export function checkCategory(raw: unknown): CatalogItem<Category> {
  return item(raw, parseCategory);
}

/** Validates one raw update without throwing. */
export function checkUpdate(raw: unknown): CatalogItem<Update> {
  return item(raw, parseUpdate);
}
