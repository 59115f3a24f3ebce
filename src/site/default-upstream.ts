/**
 * The default upstream of a new site (issue 5, part 6): on Debian or Ubuntu,
 * the machine's own apt lists, read through `apt-helper cat-file` (the lists
 * are often lz4- or xz-compressed). Elsewhere, or when the lists or
 * apt-helper are missing, none: the administrator names one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { APT_HELPER } from '../catalog/apt-source.ts';
import { DEFAULT_APT_LISTS } from '../catalog/source-spec.ts';

/** `apt:/var/lib/apt/lists` when this machine is Debian or Ubuntu and has apt lists, else undefined. */
export function defaultUpstream(osRelease = '/etc/os-release', lists = DEFAULT_APT_LISTS): string | undefined {
  let text = '';
  try {
    text = fs.readFileSync(osRelease, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): string => (new RegExp(`^${name}="?([^"\\n]*)"?$`, 'm').exec(text)?.[1] ?? '').toLowerCase();
  const family = `${field('ID')} ${field('ID_LIKE')}`;
  if (!/\b(debian|ubuntu)\b/.test(family)) return undefined;
  if (!fs.existsSync(APT_HELPER)) return undefined;
  let names: string[];
  try {
    names = fs.readdirSync(lists);
  } catch {
    return undefined;
  }
  return names.some((n) => /_Packages(\.\w+)?$/.test(n)) ? `apt:${path.resolve(lists)}` : undefined;
}
