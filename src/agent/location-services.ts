/**
 * Location services (`LocationServices.log`; spec 30 section 2, spec 10
 * flow 7): asks the MP which distribution points hold a package at a version
 * and serve this client (`POST /mp/v1/location/content`, ADR 0005), sending
 * the machine's IP addresses so the MP can match its boundaries. The MP
 * decides the order (boundary-group DPs by priority, then fallback DPs); the
 * agent logs the list in that order and keeps it.
 *
 * For the scan agent it also asks which update points hold an update source
 * at a content version or later (spec 30 §2 steps 2-7, seeds 002/003): a
 * `WSUSLocationRequest` to the MP's `mp_locationmanager` queue
 * (`POST /mp/v1/location/update-points`), whose `WSUSLocationReply` it logs
 * and hands back in the MP's order (docs/adr/0010-scan-agent.md).
 *
 * The reply is parsed at the edge: a location without a usable http(s)
 * package URL is dropped and logged, never tried.
 */
import os from 'node:os';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { CairnError } from '../shared/errors.ts';
import type { MpClient } from './mp-client.ts';
import { buildWsusLocationRequest, parseWsusLocationReply } from '../shared/wsus-location.ts';
import type { ClientIpAddress } from '../shared/wsus-location.ts';
import type { UpdatePointLocation } from './scan/types.ts';

/**
 * The subnet of an address for the location request: the interface's own
 * netmask when the address is this machine's, otherwise (simulated clients)
 * a /24 for IPv4 (ours) and none for IPv6. The MP matches boundaries on the
 * address itself; the subnet is informative, as the spec's format has it.
 */
export function subnetOf(address: string): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.address !== address || a.family !== 'IPv4') continue;
      const ip = address.split('.').map(Number);
      const mask = a.netmask.split('.').map(Number);
      return ip.map((o, i) => o & (mask[i] ?? 0)).join('.');
    }
  }
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}$/.exec(address);
  return m ? `${m[1]}.${m[2]}.${m[3]}.0` : '';
}

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

  /**
   * Update points holding `contentId` at `version` or later, in the MP's
   * order. An empty list means none does yet (the caller waits and retries);
   * a reply that is not a `WSUSLocationReply` is `CAIRN_AGENT_MP_REPLY_INVALID`.
   */
  async locateUpdatePoints(q: { locationRequestId: string; contentId: string; version: number; siteCode: string }): Promise<UpdatePointLocation[]> {
    const log = this.#log;
    log.info('CCCMWSUSLocation::GetLocationsAsyncEx');
    log.info(`Attempting to persist WSUS location request for ContentID='${q.contentId}' and ContentVersion='${q.version}'`);
    // The scan agent committed the request's ID with its job before calling (CCM_ScanJobInstance).
    log.info('Persisted WSUS location request');
    log.info(`Attempting to send WSUS location request for ContentID='${q.contentId}'`);
    const ipAddresses: ClientIpAddress[] = this.#ips().map((address) => ({ subnetAddress: subnetOf(address), address }));
    const xml = buildWsusLocationRequest({ contentId: q.contentId, version: q.version, assignedSite: q.siteCode, onInternet: false, adSite: '', forest: '', domain: '', ipAddresses });
    log.info(`WSUSLocationRequest : ${xml}`);
    const reply = this.#mp.exchange('mp_locationmanager', 'LS_ReplyLocations', 'POST', '/mp/v1/location/update-points', { body: xml, contentType: 'text/xml; charset=utf-8' });
    log.info(`Created and sent location request '${q.locationRequestId}' for package ${q.contentId}`);
    const body = (await reply).body.toString('utf8');
    log.info(`Processing Location reply message ${new Date().toISOString()}`);
    log.info(`WSUSLocationReply : ${body}`);
    const { reply: parsed, ignored } = parseWsusLocationReply(body);
    for (const i of ignored) log.warn(`Ignoring a location record without an http(s) WSUSURL or a Version: ${i}`);
    const locations: UpdatePointLocation[] = parsed.sites.flatMap((s) => s.records.map((r) => ({ url: r.url, serverName: r.serverName, contentVersion: r.version })));
    if (!locations.length) {
      log.warn(`The MP returned no update point holding ${q.contentId} at version ${q.version} or later for this client; calling back with no locations for WSUS request ${q.locationRequestId}.`);
      return locations;
    }
    log.info('Calling back with the following WSUS locations');
    for (const l of locations) log.info(`WSUS Path='${l.url}', Server='${l.serverName}', Version='${l.contentVersion}'`);
    log.info(`Calling back with locations for WSUS request ${q.locationRequestId}`);
    return locations;
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
