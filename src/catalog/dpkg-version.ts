/**
 * Debian package versions, parsed and compared exactly as dpkg does
 * (`lib/dpkg/parsehelp.c` parseversion and `lib/dpkg/version.c`
 * dpkg_version_compare / verrevcmp): `[epoch:]upstream[-revision]`; epochs
 * compare as integers; upstream and revision compare part by part, non-digit
 * runs by a modified ASCII order in which `~` sorts before everything (even
 * the end of the string) and letters before other characters, digit runs as
 * integers. `test/unit/dpkg-version.test.ts` checks it against
 * `dpkg --compare-versions`.
 *
 * It owns nothing and has no I/O. It must never approximate: a catalog rule
 * that says "lower than 1:2.0~rc1-1" means what dpkg means by it.
 */
import { CairnError } from '../shared/errors.ts';

export interface DebianVersion {
  readonly epoch: number;
  readonly upstream: string;
  /** Empty when the version has no `-revision`. */
  readonly revision: string;
}

/** The version comparisons of `dpkg --compare-versions`, and of catalog rules. */
export const VERSION_OPERATORS = ['lt', 'le', 'eq', 'ne', 'ge', 'gt'] as const;
export type VersionOperator = (typeof VERSION_OPERATORS)[number];

const UPSTREAM_CHARS = /^[A-Za-z0-9.+~:-]*$/;
const REVISION_CHARS = /^[A-Za-z0-9.+~]*$/;

/** Why `text` is not a valid Debian version (dpkg's own wording), or undefined when it is. */
export function debianVersionError(text: string): string | undefined {
  try {
    parseDebianVersion(text);
    return undefined;
  } catch (err) {
    return (err as CairnError).detail;
  }
}

/**
 * Parses a version with dpkg's rules, including the checks dpkg only warns
 * about (an upstream part that does not start with a digit, characters
 * outside the allowed sets): catalog input is held to the strict form.
 */
export function parseDebianVersion(text: string): DebianVersion {
  const fail = (why: string): never => {
    throw new CairnError('CAIRN_CATALOG_VERSION_INVALID', `'${text.slice(0, 80)}': ${why}`);
  };
  const s = text.trim();
  if (!s) fail('version string is empty');
  if (/\s/.test(s)) fail('version string has embedded spaces');
  let epoch = 0;
  let rest = s;
  const colon = s.indexOf(':');
  if (colon >= 0) {
    const e = s.slice(0, colon);
    if (!e) fail('nothing before colon in version number');
    if (!/^\d+$/.test(e)) fail('epoch in version is not number');
    epoch = Number(e);
    if (epoch > 2147483647) fail('epoch in version is too big');
    rest = s.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  const upstream = hyphen >= 0 ? rest.slice(0, hyphen) : rest;
  const revision = hyphen >= 0 ? rest.slice(hyphen + 1) : '';
  if (hyphen >= 0 && !revision) fail('revision number is empty');
  if (!upstream) fail('nothing after colon in version number');
  if (!/^\d/.test(upstream)) fail('version number does not start with digit');
  if (!UPSTREAM_CHARS.test(upstream)) fail('invalid character in version number');
  if (!REVISION_CHARS.test(revision)) fail('invalid character in revision number');
  return { epoch, upstream, revision };
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isAlpha = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);

/** dpkg's `order()`: digits and the end 0, `~` -1, letters their code, anything else its code + 256. */
function order(c: number): number {
  if (isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 126) return -1;
  if (c) return c + 256;
  return 0;
}

/** dpkg's `verrevcmp()`, over the characters of two upstream (or revision) strings. Sign is what matters. */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  // charCodeAt past the end is NaN; the C code reads the terminating NUL, 0.
  const at = (s: string, k: number): number => (k < s.length ? s.charCodeAt(k) : 0);
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(at(a, i))) || (j < b.length && !isDigit(at(b, j)))) {
      const ac = order(at(a, i));
      const bc = order(at(b, j));
      if (ac !== bc) return ac - bc;
      i += 1;
      j += 1;
    }
    while (at(a, i) === 48) i += 1;
    while (at(b, j) === 48) j += 1;
    while (isDigit(at(a, i)) && isDigit(at(b, j))) {
      if (!firstDiff) firstDiff = at(a, i) - at(b, j);
      i += 1;
      j += 1;
    }
    if (isDigit(at(a, i))) return 1;
    if (isDigit(at(b, j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** Negative, zero or positive as `a` is older than, the same as, or newer than `b` (dpkg_version_compare). */
export function compareParsedVersions(a: DebianVersion, b: DebianVersion): number {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? 1 : -1;
  const u = verrevcmp(a.upstream, b.upstream);
  if (u) return Math.sign(u);
  return Math.sign(verrevcmp(a.revision, b.revision));
}

/** Compares two version strings; throws CAIRN_CATALOG_VERSION_INVALID when either is malformed. */
export function compareDebianVersions(a: string, b: string): number {
  return compareParsedVersions(parseDebianVersion(a), parseDebianVersion(b));
}

/** True when `a <op> b` holds, as `dpkg --compare-versions a op b` would answer. */
export function versionSatisfies(a: string, op: VersionOperator, b: string): boolean {
  return operatorHolds(compareDebianVersions(a, b), op);
}

/** True when a comparison result (sign) satisfies `op`. */
export function operatorHolds(cmp: number, op: VersionOperator): boolean {
  switch (op) {
    case 'lt':
      return cmp < 0;
    case 'le':
      return cmp <= 0;
    case 'eq':
      return cmp === 0;
    case 'ne':
      return cmp !== 0;
    case 'ge':
      return cmp >= 0;
    case 'gt':
      return cmp > 0;
  }
}

/** The version in dpkg's canonical text form (epoch 0 is omitted). */
export function formatDebianVersion(v: DebianVersion): string {
  return `${v.epoch ? `${v.epoch}:` : ''}${v.upstream}${v.revision ? `-${v.revision}` : ''}`;
}
