/**
 * Machine facts: what a client tells the MP about itself (name, IP
 * addresses, OS). The real agent reads them from the machine; simulated
 * clients get theirs from a facts file (`--facts FILE`, JSON, described in
 * docs/operations.md):
 *
 * ```json
 * { "clients": [
 *   { "name": "SIM-{n:5}", "count": 4000, "ipAddresses": ["{ipv4:10.20.0.1}"], "osFamily": "linux", "osVersion": "Ubuntu 24.04 LTS" },
 *   { "name": "BRANCH-{n}", "ipAddresses": ["192.168.7.{n}"] }
 * ] }
 * ```
 *
 * Entries are used in order; each makes `count` clients (the last may omit
 * it and makes the rest). In strings, `{n}` is the counter within the entry
 * from 1, `{n:W}` the same padded with zeros to W digits, `{i}` the client's
 * number in the whole simulation from 1, and `{ipv4:A.B.C.D}` the address
 * A.B.C.D plus n − 1. The file is parsed at the edge: anything else is
 * `CAIRN_AGENT_FACTS_INVALID` naming the entry and field.
 *
 * An entry may carry an `inventory` (issue 6: what the scanner evaluates
 * catalog rules against), shared by all the clients of the entry:
 *
 * ```json
 * "inventory": {
 *   "dpkgStatus": "status-web",            // a dpkg status file; relative to the facts file's folder
 *   "packages": ["openssl:amd64=3.0.11-1~deb12u1", { "name": "curl", "arch": "amd64", "version": "7.88.1-10" }],
 *   "os": { "family": "debian", "version": "12" },
 *   "facts": { "architecture": "amd64", "channel": "ring-{n}" }
 * }
 * ```
 *
 * `packages` are added to the status file's (replacing the same name and
 * architecture); fact values may use the templates. Without `inventory` a
 * client has no `machine`, and the scan agent scans it as an empty machine.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { debianVersionError } from '../catalog/dpkg-version.ts';
import type { InstalledPackage, Machine } from '../catalog/rules.ts';
import { CairnError } from '../shared/errors.ts';
import { readDpkgStatusFileSync } from './scan/inventory.ts';
import { machineIpAddresses } from './location-services.ts';

export interface SimulatedFacts {
  readonly name: string;
  readonly ipAddresses: readonly string[];
  readonly osFamily: string;
  readonly osVersion: string;
  /** The entry's inventory, when it has one: one object shared by the entry's clients unless its facts use templates. */
  readonly machine?: Machine;
}

function bad(what: string): never {
  throw new CairnError('CAIRN_AGENT_FACTS_INVALID', what);
}

function ipv4Plus(base: string, add: number, where: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(base);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) bad(`${where}: ${JSON.stringify(base)} is not an IPv4 address`);
  const n = m.slice(1).reduce((acc, o) => acc * 256 + Number(o), 0) + add;
  if (n > 0xffffffff) bad(`${where}: ${base} + ${add} is past 255.255.255.255`);
  return [24, 16, 8, 0].map((s) => (Math.floor(n / 2 ** s) % 256).toString()).join('.');
}

/** Expands one template string for client `n` of its entry and `i` of the simulation. */
export function expandTemplate(t: string, n: number, i: number, where: string): string {
  return t.replace(/\{([a-z0-9]+)(?::([^}]*))?\}/g, (whole, key: string, arg: string | undefined) => {
    if (key === 'n' && arg === undefined) return String(n);
    if (key === 'n' && arg !== undefined && /^\d{1,2}$/.test(arg)) return String(n).padStart(Number(arg), '0');
    if (key === 'i' && arg === undefined) return String(i);
    if (key === 'ipv4' && arg !== undefined) return ipv4Plus(arg, n - 1, where);
    bad(`${where}: unknown template ${whole}`);
  });
}

const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCH_RE = /^[a-z0-9][a-z0-9-]*$/;
const MAX_FACTS = 1000;

function packageEntry(v: unknown, where: string): InstalledPackage {
  let name: unknown;
  let arch: unknown;
  let version: unknown;
  if (typeof v === 'string') {
    const m = /^([^:=\s]+):([^:=\s]+)=(\S+)$/.exec(v);
    if (!m) bad(`${where} must be "name:arch=version" or { "name", "arch", "version" }, not ${JSON.stringify(v).slice(0, 80)}`);
    [, name, arch, version] = m;
  } else if (v && typeof v === 'object' && !Array.isArray(v)) {
    ({ name, arch, version } = v as Record<string, unknown>);
  } else {
    bad(`${where} must be "name:arch=version" or { "name", "arch", "version" }`);
  }
  if (typeof name !== 'string' || !PACKAGE_RE.test(name)) bad(`${where}: ${JSON.stringify(name)} is not a Debian package name`);
  if (typeof arch !== 'string' || !ARCH_RE.test(arch)) bad(`${where}: ${JSON.stringify(arch)} is not a Debian architecture (amd64, all, …)`);
  if (typeof version !== 'string') bad(`${where}: the version must be a string`);
  const why = debianVersionError(version);
  if (why !== undefined) bad(`${where}: version ${why}`);
  return { name, arch, version: version.trim() };
}

/** The parts of an entry's `inventory` that all its clients share, and its fact templates. */
interface InventoryTemplate {
  readonly packages?: readonly InstalledPackage[];
  readonly os?: { readonly family: string; readonly version: string };
  readonly facts: Readonly<Record<string, string>>;
  readonly templated: boolean;
}

function parseInventory(v: unknown, where: string, baseDir: string): InventoryTemplate {
  if (!v || typeof v !== 'object' || Array.isArray(v)) bad(`${where} must be an object`);
  const inv = v as Record<string, unknown>;
  for (const k of Object.keys(inv)) if (!['dpkgStatus', 'packages', 'os', 'facts'].includes(k)) bad(`${where}.${k} is not a field of an inventory (dpkgStatus, packages, os, facts)`);
  let packages: InstalledPackage[] | undefined;
  if (inv.dpkgStatus !== undefined) {
    if (typeof inv.dpkgStatus !== 'string' || !inv.dpkgStatus) bad(`${where}.dpkgStatus must be the path of a dpkg status file`);
    const file = path.resolve(baseDir, inv.dpkgStatus);
    const read = readDpkgStatusFileSync(file);
    if (read instanceof Error) bad(`${where}.dpkgStatus: cannot read ${file}: ${read.message}`);
    packages = read;
  }
  if (inv.packages !== undefined) {
    if (!Array.isArray(inv.packages)) bad(`${where}.packages must be a list`);
    const given = inv.packages.map((p, k) => packageEntry(p, `${where}.packages[${k}]`));
    const key = (p: InstalledPackage): string => `${p.name}:${p.arch}`;
    const replaced = new Set(given.map(key));
    packages = [...(packages ?? []).filter((p) => !replaced.has(key(p))), ...given];
  }
  let osPart: InventoryTemplate['os'];
  if (inv.os !== undefined) {
    const o = inv.os as Record<string, unknown> | null;
    if (!o || typeof o !== 'object' || Array.isArray(o)) bad(`${where}.os must be { "family", "version" }`);
    if (typeof o.family !== 'string' || !o.family) bad(`${where}.os.family must be a non-empty string (os-release ID: debian, ubuntu, …)`);
    if (o.version !== undefined && typeof o.version !== 'string') bad(`${where}.os.version must be a string (os-release VERSION_ID)`);
    osPart = { family: o.family, version: (o.version as string | undefined) ?? '' };
  }
  const facts: Record<string, string> = {};
  let templated = false;
  if (inv.facts !== undefined) {
    if (!inv.facts || typeof inv.facts !== 'object' || Array.isArray(inv.facts)) bad(`${where}.facts must be an object of strings`);
    const entries = Object.entries(inv.facts as Record<string, unknown>);
    if (entries.length > MAX_FACTS) bad(`${where}.facts has more than ${MAX_FACTS} facts`);
    for (const [k, val] of entries) {
      if (!k) bad(`${where}.facts has an empty name`);
      if (typeof val !== 'string') bad(`${where}.facts.${k} must be a string`);
      facts[k] = val;
      if (val.includes('{')) templated = true;
    }
  }
  return { ...(packages ? { packages } : {}), ...(osPart ? { os: osPart } : {}), facts, templated };
}

function machineFor(t: InventoryTemplate, n: number, i: number, where: string): Machine {
  const facts: Record<string, string> = {};
  for (const [k, v] of Object.entries(t.facts)) facts[k] = v.includes('{') ? expandTemplate(v, n, i, `${where}.facts.${k}`) : v;
  return { ...(t.os ? { os: t.os } : {}), facts, packages: t.packages ?? [] };
}

/** Parses a facts file's text; `baseDir` resolves relative `dpkgStatus` paths (the facts file's folder). */
export function parseFacts(text: string, count: number, baseDir = process.cwd()): SimulatedFacts[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    bad(`not JSON (${(err as Error).message})`);
  }
  const entries = (doc as { clients?: unknown } | null)?.clients;
  if (!Array.isArray(entries) || entries.length === 0) bad('the file must be a JSON object with a non-empty "clients" list');
  const out: SimulatedFacts[] = [];
  for (const [k, raw] of (entries as unknown[]).entries()) {
    const where = `clients[${k}]`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad(`${where} is not an object`);
    const e = raw as Record<string, unknown>;
    if (typeof e.name !== 'string' || !e.name) bad(`${where}.name must be a non-empty string`);
    const last = k === entries.length - 1;
    let n = e.count;
    if (n === undefined) {
      if (!last) bad(`${where}.count is missing (only the last entry may omit it)`);
      n = Math.max(0, count - out.length);
    }
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) bad(`${where}.count must be a non-negative integer`);
    const ips = e.ipAddresses ?? [];
    if (!Array.isArray(ips) || !ips.every((x) => typeof x === 'string')) bad(`${where}.ipAddresses must be a list of strings`);
    for (const f of ['osFamily', 'osVersion'] as const) if (e[f] !== undefined && typeof e[f] !== 'string') bad(`${where}.${f} must be a string`);
    const inventory = e.inventory === undefined ? undefined : parseInventory(e.inventory, `${where}.inventory`, baseDir);
    const shared = inventory && !inventory.templated ? machineFor(inventory, 1, 1, `${where}.inventory`) : undefined;
    for (let j = 1; j <= (n as number) && out.length < count; j += 1) {
      const i = out.length + 1;
      const name = expandTemplate(e.name as string, j, i, `${where}.name`);
      if (name.length > 64 || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) bad(`${where}.name expands to ${JSON.stringify(name)}, not a machine name (letters, digits, . _ -; at most 64)`);
      out.push({
        name,
        ipAddresses: (ips as string[]).map((t) => expandTemplate(t, j, i, `${where}.ipAddresses`)),
        osFamily: (e.osFamily as string | undefined) ?? 'linux',
        osVersion: (e.osVersion as string | undefined) ?? 'simulated',
        ...(inventory ? { machine: shared ?? machineFor(inventory, j, i, `${where}.inventory`) } : {}),
      });
    }
  }
  if (out.length < count) bad(`the entries make ${out.length} clients, fewer than --simulate ${count}`);
  const names = new Set<string>();
  for (const f of out) {
    if (names.has(f.name)) bad(`the name ${f.name} is made twice; use {n} or {i} in the names`);
    names.add(f.name);
  }
  return out;
}

export function readFactsFile(file: string, count: number): SimulatedFacts[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    bad(`cannot read ${file}: ${(err as Error).message}`);
  }
  return parseFacts(text, count, path.dirname(path.resolve(file)));
}

function osVersion(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    if (m?.[1]) return m[1];
  } catch {
    // Not every system has os-release; the kernel release will do.
  }
  return `${os.type()} ${os.release()}`;
}

/** This machine's facts: host name, real interface addresses (read at each request), OS. */
export function machineFacts(): { name: string; ipAddresses: () => string[]; osFamily: string; osVersion: string } {
  return { name: os.hostname().split('.')[0] || 'localhost', ipAddresses: machineIpAddresses, osFamily: os.platform(), osVersion: osVersion() };
}
