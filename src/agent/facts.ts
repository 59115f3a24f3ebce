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
 */
import fs from 'node:fs';
import os from 'node:os';
import { CairnError } from '../shared/errors.ts';
import { machineIpAddresses } from './location-services.ts';

export interface SimulatedFacts {
  readonly name: string;
  readonly ipAddresses: readonly string[];
  readonly osFamily: string;
  readonly osVersion: string;
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

export function parseFacts(text: string, count: number): SimulatedFacts[] {
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
    for (let j = 1; j <= (n as number) && out.length < count; j += 1) {
      const i = out.length + 1;
      const name = expandTemplate(e.name as string, j, i, `${where}.name`);
      if (name.length > 64 || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) bad(`${where}.name expands to ${JSON.stringify(name)}, not a machine name (letters, digits, . _ -; at most 64)`);
      out.push({
        name,
        ipAddresses: (ips as string[]).map((t) => expandTemplate(t, j, i, `${where}.ipAddresses`)),
        osFamily: (e.osFamily as string | undefined) ?? 'linux',
        osVersion: (e.osVersion as string | undefined) ?? 'simulated',
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
  return parseFacts(text, count);
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
