/**
 * An upstream written as one string, the way the site keeps it
 * (`Update_SyncStatus.UpstreamSource`) and sends it to an update point:
 * `http(s)://host:port` (a `cairn upstream`, or another update point: the
 * same protocol), or `apt:<absolute folder>` (apt lists, docs/catalog.md).
 * Parsed at the edge; anything else is CAIRN_SYNC_UPSTREAM_INVALID.
 */
import path from 'node:path';
import { CairnError } from '../shared/errors.ts';
import { createAptSource } from './apt-source.ts';
import type { CatalogSource } from './catalog-source.ts';
import { createUpstreamClient } from './upstream-client.ts';

/** The default upstream of a site on Debian or Ubuntu: the machine's own apt lists (issue 5, part 6). */
export const DEFAULT_APT_LISTS = '/var/lib/apt/lists';

/** Checks and normalises an upstream string; '' stays '' (none). */
export function normaliseSourceSpec(spec: string): string {
  const s = spec.trim();
  if (!s) return '';
  if (s.startsWith('apt:')) {
    const dir = s.slice(4);
    if (!path.isAbsolute(dir)) throw new CairnError('CAIRN_SYNC_UPSTREAM_INVALID', `${s.slice(0, 200)}: an apt upstream is apt:<absolute folder>`);
    return `apt:${path.resolve(dir)}`;
  }
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new CairnError('CAIRN_SYNC_UPSTREAM_INVALID', `${s.slice(0, 200)} is neither an http(s) URL nor apt:<folder>`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CairnError('CAIRN_SYNC_UPSTREAM_INVALID', `${s.slice(0, 200)} is neither an http(s) URL nor apt:<folder>`);
  return s.replace(/\/+$/, '');
}

export function sourceFromSpec(spec: string, opts: { pageSize?: number } = {}): CatalogSource {
  const s = normaliseSourceSpec(spec);
  if (!s) throw new CairnError('CAIRN_SYNC_NO_UPSTREAM');
  return s.startsWith('apt:') ? createAptSource(s.slice(4), opts) : createUpstreamClient(s, opts);
}
