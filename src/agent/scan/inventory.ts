/**
 * A machine's inventory, as the scanner evaluates catalog rules against it
 * (issue 6, part 3): the installed Debian packages from the dpkg database,
 * the OS from os-release, and a few facts an administrator expects to test
 * (host name, dpkg architecture, kernel).
 *
 * Which packages count as installed follows apt, which the real-machine test
 * compares the scan with (`apt list --upgradable`): a package is installed,
 * at the `Version` of its stanza, unless its status is `not-installed` or
 * `config-files` (so `hold ok installed`, `deinstall ok installed` and
 * triggers-pending packages count; so do half-configured ones, whose files
 * are on disk). Each (package, architecture) is one entry: `Multi-Arch: same`
 * packages installed for two architectures are two entries, and
 * `Architecture: all` stays `all` (apt and the apt source key updates the
 * same way). docs/operations.md, "Inventory", says all of this.
 *
 * Reading never throws on a machine it does not understand: a missing or
 * unreadable file is an empty part of the inventory, a malformed stanza is
 * skipped. It only reads files.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { InstalledPackage, Machine } from '../../catalog/rules.ts';

/** dpkg status words (the third word of `Status:`) whose package has no files of its version on disk. */
const NOT_INSTALLED = new Set(['not-installed', 'config-files']);
const STATUS_WANT = new Set(['unknown', 'install', 'hold', 'deinstall', 'purge']);
const STATUS_EFLAG = new Set(['ok', 'reinstreq']);
const STATUS_WORDS = new Set(['not-installed', 'config-files', 'half-installed', 'unpacked', 'half-configured', 'triggers-awaited', 'triggers-pending', 'installed']);

/** Why a dpkg `Status:` value means "not installed", or undefined when the package is installed. */
export function dpkgStatusNotInstalled(status: string | undefined): string | undefined {
  if (status === undefined) return 'no Status field';
  const w = status.trim().split(/\s+/);
  if (w.length !== 3 || !STATUS_WANT.has(w[0]!) || !STATUS_EFLAG.has(w[1]!) || !STATUS_WORDS.has(w[2]!)) return `Status '${status.trim().slice(0, 60)}' is not dpkg's "want flag status"`;
  if (NOT_INSTALLED.has(w[2]!)) return `status ${w[2]}`;
  return undefined;
}

/**
 * Parses the text of a dpkg status file (`/var/lib/dpkg/status`, or a
 * simulated client's copy) into its installed packages, in file order. Only
 * `Package`, `Status`, `Architecture` and `Version` are read; continuation
 * lines and other fields are ignored. A stanza without one of them is
 * skipped (dpkg itself never writes one).
 */
export function parseDpkgStatus(text: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  for (const stanza of text.split(/\r?\n(?:[ \t]*\r?\n)+/)) {
    let name: string | undefined;
    let arch: string | undefined;
    let version: string | undefined;
    let status: string | undefined;
    for (const line of stanza.split(/\r?\n/)) {
      if (!line || line[0] === ' ' || line[0] === '\t') continue;
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const value = line.slice(colon + 1).trim();
      switch (line.slice(0, colon)) {
        case 'Package':
          name = value;
          break;
        case 'Architecture':
          arch = value;
          break;
        case 'Version':
          version = value;
          break;
        case 'Status':
          status = value;
          break;
        default:
      }
    }
    if (!name || !arch || !version) continue;
    if (dpkgStatusNotInstalled(status) !== undefined) continue;
    out.push({ name, arch, version });
  }
  return out;
}

/** `ID` and `VERSION_ID` (and the rest) of an os-release file's text; quotes and escapes undone. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(raw.trim());
    if (!m) continue;
    let v = m[2]!;
    if (/^".*"$/.test(v)) v = v.slice(1, -1).replace(/\\(["$`\\])/g, '$1');
    else if (/^'.*'$/.test(v)) v = v.slice(1, -1);
    out[m[1]!] = v;
  }
  return out;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Node's `process.arch` as a Debian architecture, for machines without dpkg. */
const DEBIAN_ARCH: Readonly<Record<string, string>> = { x64: 'amd64', arm64: 'arm64', arm: 'armhf', ia32: 'i386', ppc64: 'ppc64el', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips64el: 'mips64el' };

/**
 * The inventory of the machine whose root is `root` ('/' for this one).
 * Facts: `hostname`, `architecture` (dpkg's native architecture: that of the
 * installed `dpkg` package, else Node's), `kernel` (release; only for '/'),
 * `os.id`, `os.version_id`, `os.codename`, `os.pretty_name` when os-release
 * has them.
 */
export async function readLocalInventory(root = '/'): Promise<Machine> {
  const statusText = await readText(path.join(root, 'var/lib/dpkg/status'));
  const packages = statusText === undefined ? [] : parseDpkgStatus(statusText);
  const osText = (await readText(path.join(root, 'etc/os-release'))) ?? (await readText(path.join(root, 'usr/lib/os-release')));
  const rel = osText === undefined ? {} : parseOsRelease(osText);
  const isThisMachine = path.resolve(root) === '/';
  const facts: Record<string, string> = {};
  const hostname = isThisMachine ? os.hostname() : ((await readText(path.join(root, 'etc/hostname'))) ?? '').trim();
  if (hostname) facts.hostname = hostname;
  // dpkg is always installed for the native architecture; Node's guess only for a machine without it.
  const dpkgArch = packages.find((p) => p.name === 'dpkg' && p.arch !== 'all')?.arch;
  const arch = dpkgArch ?? (isThisMachine ? DEBIAN_ARCH[process.arch] : undefined);
  if (arch) facts.architecture = arch;
  if (isThisMachine) facts.kernel = os.release();
  for (const [key, fact] of [['ID', 'os.id'], ['VERSION_ID', 'os.version_id'], ['VERSION_CODENAME', 'os.codename'], ['PRETTY_NAME', 'os.pretty_name']] as const) {
    if (rel[key]) facts[fact] = rel[key];
  }
  return {
    ...(rel.ID ? { os: { family: rel.ID, version: rel.VERSION_ID ?? '' } } : {}),
    facts,
    packages,
  };
}

/** Synchronous read of a dpkg status file for the facts file's edge; undefined when it cannot be read. */
export function readDpkgStatusFileSync(file: string): InstalledPackage[] | Error {
  try {
    return parseDpkgStatus(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    return err as Error;
  }
}
