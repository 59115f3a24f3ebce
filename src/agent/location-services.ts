/**
 * Location services (`LocationServices.log`; spec 30 section 2, spec 10
 * flow 7): asks the MP which distribution points hold a package at a version
 * and serve this client (`POST /mp/v1/location/content`, ADR 0005), sending
 * the machine's IP addresses so the MP can match its boundaries. The MP
 * decides the order (boundary-group DPs by priority, then fallback DPs); the
 * agent logs the list in that order and keeps it.
 *
 * The reply is parsed at the edge: a location without a usable http(s)
 * package URL is dropped and logged, never tried.
 */
import os from 'node:os';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError } from '../shared/errors.ts';
import type { MpClient } from './mp-client.ts';

export interface Location {
  readonly dpName: string;
  readonly url: string;
  readonly packageUrl: string;
  readonly boundaryGroup: string | null;
  readonly fallback: boolean;
}

/** The machine's addresses from its real interfaces: every non-internal IPv4 and IPv6 address; loopback only when there is nothing else. */
export function machineIpAddresses(): string[] {
  const out: string[] = [];
  const loop: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80')) continue;
      (a.internal ? loop : out).push(a.address);
    }
  }
  return out.length ? out : loop.length ? loop : ['127.0.0.1'];
}

function httpUrl(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? v : undefined;
  } catch {
    return undefined;
  }
}

export class LocationServices {
  readonly #mp: MpClient;
  readonly #log: ComponentLog;
  readonly #ips: () => readonly string[];

  constructor(o: { mp: MpClient; log: ComponentLog; ipAddresses: () => readonly string[] }) {
    this.#mp = o.mp;
    this.#log = o.log;
    this.#ips = o.ipAddresses;
  }

  async locateContent(packageId: string, version: number | string): Promise<Location[]> {
    const ipAddresses = [...this.#ips()];
    this.#log.info(`Requesting content locations for ${packageId} version ${version}, client addresses ${ipAddresses.join(', ')}.`);
    const { json } = await this.#mp.json<{ packageId?: unknown; locations?: unknown }>('POST', '/mp/v1/location/content', { packageId, version, ipAddresses });
    if (!Array.isArray(json.locations)) throw new CairnError('CAIRN_AGENT_MP_REPLY_INVALID', 'POST /mp/v1/location/content: no locations list');
    const locations: Location[] = [];
    for (const [i, raw] of (json.locations as unknown[]).entries()) {
      const r = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
      const packageUrl = httpUrl(r.packageUrl);
      if (!packageUrl || typeof r.dpName !== 'string') {
        this.#log.warn(`Ignoring location ${i} of the reply: it has no DP name or no http(s) package URL (${JSON.stringify(raw)?.slice(0, 200)}).`);
        continue;
      }
      locations.push({ dpName: r.dpName, url: httpUrl(r.url) ?? '', packageUrl, boundaryGroup: typeof r.boundaryGroup === 'string' ? r.boundaryGroup : null, fallback: r.fallback === true });
    }
    if (!locations.length) {
      this.#log.warn(`The MP returned no location for ${packageId} version ${version}: no DP holding it serves this client's boundaries, and no fallback DP has it.`);
      return locations;
    }
    this.#log.info(`The MP returned ${locations.length} location(s) for ${packageId} version ${version}, in this order:`);
    for (const [i, l] of locations.entries()) {
      this.#log.info(`  ${i + 1}. ${l.dpName} ${l.packageUrl} (${l.fallback ? 'fallback' : `boundary group ${l.boundaryGroup ?? '-'}`})`);
    }
    return locations;
  }
}
