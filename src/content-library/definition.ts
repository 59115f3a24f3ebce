/**
 * Content definitions as values: the canonical definition text and its hash,
 * and the validation of everything that names a place in the library (content
 * IDs, relative paths, hashes).
 *
 * This module owns the rules for what a content path may be. The same rules
 * serve three callers: `parseContentDefinition` turns untrusted JSON from the
 * network into a typed `ContentDefinition` (STYLE.md, convention 5), the
 * content library re-checks a definition before it writes it to disk, and the
 * snapshot of a source folder rejects names the library could not store.
 *
 * It must never touch the file system: it only computes and validates.
 *
 * Paths are compared and sorted by plain UTF-16 code-unit comparison
 * (`comparePaths`) everywhere in the library, so every machine agrees on the
 * order and therefore on the definition hash.
 */
import { createHash } from 'node:crypto';
import type { ContentDefinition, FileEntry } from './types.ts';
import { CairnError } from '../shared/errors.ts';

/** First line of the canonical definition text; bump it if the text ever changes. */
export const DEFINITION_FORMAT = 'cairn-content/1';

/**
 * Longest path segment, in UTF-8 bytes. Linux allows 255 bytes per name, and
 * the data library stores a file `x` as `x.INI`, so four bytes are kept back.
 */
export const MAX_SEGMENT_BYTES = 251;
/** Longest relative path, in UTF-8 bytes: leaves room under PATH_MAX (4096) for the library root. */
export const MAX_PATH_BYTES = 3072;

const HASH_RE = /^[0-9A-Fa-f]{64}$/;
// Tab and newline separate fields and lines of the canonical text and of INI
// files; no control character has any business in a file name we distribute.
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
// With the `u` flag this matches only unpaired surrogates, which have no UTF-8 form.
const LONE_SURROGATE_RE = /[\uD800-\uDFFF]/u;
/** Package IDs are a site code and hex digits (`CS10001E`); allow a little more, never a path character. */
const PACKAGE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Plain code-unit order, the one order used for paths and hashes everywhere. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks a hash from outside and returns it in canonical form (upper case).
 * Throws CAIRN_HASH_INVALID unless it is 64 hexadecimal characters.
 */
export function validateHash(h: unknown): string {
  if (typeof h !== 'string' || !HASH_RE.test(h)) {
    throw new CairnError('CAIRN_HASH_INVALID', typeof h === 'string' ? JSON.stringify(h.slice(0, 80)) : `a ${typeof h} is not a hash`);
  }
  return h.toUpperCase();
}

/**
 * Checks one name (a path segment): the reason it cannot be stored, or
 * undefined when it is fine. Shared with the snapshot, which reports the
 * reason against the source entry.
 */
export function segmentProblem(segment: string): string | undefined {
  if (segment === '') return 'it has an empty segment';
  if (segment === '.' || segment === '..') return `it has a "${segment}" segment`;
  if (CONTROL_RE.test(segment)) return 'it contains a control character';
  if (LONE_SURROGATE_RE.test(segment)) return 'it is not valid Unicode';
  if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) return `a name is longer than ${MAX_SEGMENT_BYTES} bytes`;
  return undefined;
}

/**
 * Checks a relative content path ('/'-separated, no empty, '.' or '..'
 * segments, not absolute, no control characters, not too long) and returns
 * it unchanged. Throws CAIRN_CONTENT_PATH_INVALID naming the path and why.
 */
export function validateRelativePath(p: unknown): string {
  if (typeof p !== 'string') throw new CairnError('CAIRN_CONTENT_PATH_INVALID', `a ${typeof p} is not a path`);
  const fail = (why: string): never => {
    throw new CairnError('CAIRN_CONTENT_PATH_INVALID', `${JSON.stringify(p.slice(0, 200))}: ${why}`);
  };
  if (p === '') fail('it is empty');
  if (p.startsWith('/')) fail('it is absolute');
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) fail(`it is longer than ${MAX_PATH_BYTES} bytes`);
  for (const segment of p.split('/')) {
    const problem = segmentProblem(segment);
    if (problem) fail(problem);
  }
  return p;
}

/** The content ID of a package version: `<PkgID>.<version>`. */
export function contentIdOf(packageId: string, version: number): string {
  return `${packageId}.${version}`;
}

/**
 * Checks a content ID (`<PkgID>.<version>`) from outside, so it can safely be
 * used as a file name, and returns its parts. Throws CAIRN_REQUEST_INVALID.
 */
export function parseContentId(id: unknown): { contentId: string; packageId: string; version: number } {
  if (typeof id === 'string') {
    const dot = id.lastIndexOf('.');
    const packageId = id.slice(0, dot);
    const versionText = id.slice(dot + 1);
    const version = Number(versionText);
    if (dot > 0 && PACKAGE_ID_RE.test(packageId) && /^(0|[1-9][0-9]{0,14})$/.test(versionText) && Number.isSafeInteger(version)) {
      return { contentId: id, packageId, version };
    }
  }
  throw new CairnError('CAIRN_REQUEST_INVALID', `content ID ${JSON.stringify(id)} is not <PkgID>.<version>`);
}

/** Checks a package ID from outside so it can safely be used as a file name. Throws CAIRN_REQUEST_INVALID. */
export function validatePackageId(id: unknown): string {
  if (typeof id !== 'string' || !PACKAGE_ID_RE.test(id)) {
    throw new CairnError('CAIRN_REQUEST_INVALID', `package ID ${JSON.stringify(id)} is not valid`);
  }
  return id;
}

/**
 * The canonical definition text: `cairn-content/1`, the content ID, then one
 * `D\t<path>` line per folder and one `F\t<path>\t<hash>\t<size>` line per
 * file, each group sorted by path. Mode and time are left out on purpose: a
 * `touch` or `chmod` of the source does not make a new content.
 */
export function canonicalDefinitionText(def: Pick<ContentDefinition, 'contentId' | 'folders' | 'files'>): string {
  const folders = [...def.folders].sort(comparePaths);
  const files = [...def.files].sort((a, b) => comparePaths(a.path, b.path));
  const lines = [DEFINITION_FORMAT, def.contentId];
  for (const folder of folders) lines.push(`D\t${folder}`);
  for (const f of files) lines.push(`F\t${f.path}\t${f.hash}\t${f.size}`);
  return `${lines.join('\n')}\n`;
}

/** SHA-256 of the canonical definition text, upper-case hex. */
export function definitionHash(def: Pick<ContentDefinition, 'contentId' | 'folders' | 'files'>): string {
  return createHash('sha256').update(canonicalDefinitionText(def), 'utf8').digest('hex').toUpperCase();
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function requestInvalid(detail: string): never {
  throw new CairnError('CAIRN_REQUEST_INVALID', detail);
}

function nonNegativeInteger(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) requestInvalid(`${what} must be an integer from 0 to ${max}`);
  return v;
}

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function parseFileEntry(v: unknown, index: number): FileEntry {
  if (!isRecord(v)) requestInvalid(`files[${index}] is not an object`);
  const path = validateRelativePath(v.path);
  const hash = validateHash(v.hash);
  const size = nonNegativeInteger(v.size, `size of ${path}`);
  const mode = nonNegativeInteger(v.mode, `mode of ${path}`, 0o7777);
  if (typeof v.mtime !== 'string' || !ISO_RE.test(v.mtime) || Number.isNaN(Date.parse(v.mtime))) {
    requestInvalid(`mtime of ${path} is not an ISO 8601 time`);
  }
  return { path, hash, size, mode, mtime: v.mtime };
}

/**
 * Checks that a definition's parts fit together: no path twice, no path below
 * a file, every parent folder listed, no file `x` beside a folder `x.INI`
 * (they would share a name in the data library), the size is the total and
 * the hash is the definition hash. Throws CAIRN_REQUEST_INVALID.
 */
export function checkDefinitionConsistent(def: ContentDefinition): void {
  const expectedId = contentIdOf(def.packageId, def.version);
  if (def.contentId !== expectedId) requestInvalid(`content ID ${def.contentId} does not match package ${def.packageId} version ${def.version}`);
  const folders = new Set<string>();
  for (const folder of def.folders) {
    if (folders.has(folder)) requestInvalid(`folder ${JSON.stringify(folder)} is listed twice`);
    folders.add(folder);
  }
  const files = new Set<string>();
  let total = 0;
  for (const f of def.files) {
    if (files.has(f.path) || folders.has(f.path)) requestInvalid(`path ${JSON.stringify(f.path)} is listed twice`);
    if (folders.has(`${f.path}.INI`)) requestInvalid(`file ${JSON.stringify(f.path)} and folder ${JSON.stringify(`${f.path}.INI`)} cannot both be stored`);
    files.add(f.path);
    total += f.size;
  }
  const parentsListed = (p: string): void => {
    for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
      const parent = p.slice(0, i);
      if (files.has(parent)) requestInvalid(`${JSON.stringify(p)} lies below the file ${JSON.stringify(parent)}`);
      if (!folders.has(parent)) requestInvalid(`the folder ${JSON.stringify(parent)} of ${JSON.stringify(p)} is not listed`);
    }
  };
  for (const folder of folders) parentsListed(folder);
  for (const file of files) parentsListed(file);
  if (total !== def.size) requestInvalid(`size ${def.size} is not the total of the file sizes (${total})`);
  const hash = definitionHash(def);
  if (hash !== def.hash) requestInvalid(`hash ${def.hash} is not the definition hash (${hash})`);
}

/**
 * Validates an untrusted value (JSON from the network or from disk) into a
 * ContentDefinition with folders and files sorted. Throws
 * CAIRN_REQUEST_INVALID for a malformed or inconsistent definition,
 * CAIRN_CONTENT_PATH_INVALID for a bad path and CAIRN_HASH_INVALID for a bad
 * hash. Unknown members are ignored.
 */
export function parseContentDefinition(json: unknown): ContentDefinition {
  if (!isRecord(json)) requestInvalid('a content definition must be an object');
  const { contentId, packageId, version } = parseContentId(json.contentId);
  if (json.packageId !== packageId) requestInvalid(`packageId ${JSON.stringify(json.packageId)} does not match content ID ${contentId}`);
  if (json.version !== version) requestInvalid(`version ${JSON.stringify(json.version)} does not match content ID ${contentId}`);
  const hash = validateHash(json.hash);
  const size = nonNegativeInteger(json.size, 'size');
  if (!Array.isArray(json.folders)) requestInvalid('folders must be an array');
  if (!Array.isArray(json.files)) requestInvalid('files must be an array');
  const folders = (json.folders as unknown[]).map((f) => validateRelativePath(f)).sort(comparePaths);
  const files = (json.files as unknown[]).map((f, i) => parseFileEntry(f, i)).sort((a, b) => comparePaths(a.path, b.path));
  const def: ContentDefinition = { contentId, packageId, version, hash, size, folders, files };
  checkDefinitionConsistent(def);
  return def;
}
