/**
 * Update-point location messages (spec 30, section 2, steps 2 and 3): the
 * `WSUSLocationRequest` a client's location services sends to the MP and the
 * `WSUSLocationReply` the MP answers with, in exactly the spec's XML.
 *
 * Both ends parse what they receive at the edge (STYLE.md, convention 5):
 * the MP turns a malformed request into `CAIRN_WSUS_LOCATION_REQUEST_INVALID`
 * (HTTP 400), the agent a malformed reply into `CAIRN_AGENT_MP_REPLY_INVALID`.
 * The parser is the one the state-message `Report` uses (fast-xml-parser),
 * with the same settings. No I/O here.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { CairnError } from './errors.ts';
import type { ErrorCode } from './errors.ts';
import { XML_PARSER_OPTIONS, attrs, child } from './state-report.ts';

export const WSUS_LOCATION_SCHEMA_VERSION = '1.00';
/** Ours: a request or reply is a few hundred bytes; anything past this is not one. */
export const MAX_WSUS_LOCATION_BYTES = 64 * 1024;
/** Ours: at most this many addresses in a request (the MP's JSON routes allow as many). */
export const MAX_LOCATION_ADDRESSES = 32;

export interface ClientIpAddress {
  /** The address's subnet (`192.168.2.0`); '' when the client does not know it. */
  readonly subnetAddress: string;
  readonly address: string;
}

export interface WsusLocationRequest {
  /** The update source ID, `{GUID}` in upper case as the policy carries it. */
  readonly contentId: string;
  /** The content version the client requires. */
  readonly version: number;
  readonly assignedSite: string;
  readonly onInternet: boolean;
  readonly adSite: string;
  readonly forest: string;
  readonly domain: string;
  readonly ipAddresses: readonly ClientIpAddress[];
}

export interface WsusLocationRecord {
  readonly url: string;
  readonly serverName: string;
  readonly version: number;
}

export interface WsusLocationReply {
  readonly sites: readonly { readonly siteCode: string; readonly records: readonly WsusLocationRecord[] }[];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The request as the spec writes it (one line; the spec's indentation is only layout). */
export function buildWsusLocationRequest(r: WsusLocationRequest): string {
  return (
    `<WSUSLocationRequest SchemaVersion="${WSUS_LOCATION_SCHEMA_VERSION}">` +
    `<Content ID="${esc(r.contentId)}" Version="${r.version}"/>` +
    `<AssignedSite SiteCode="${esc(r.assignedSite)}"/>` +
    `<ClientLocationInfo OnInternet="${r.onInternet ? 1 : 0}">` +
    `<ADSite Name="${esc(r.adSite)}"/><Forest Name="${esc(r.forest)}"/><Domain Name="${esc(r.domain)}"/>` +
    `<IPAddresses>${r.ipAddresses.map((a) => `<IPAddress SubnetAddress="${esc(a.subnetAddress)}" Address="${esc(a.address)}"/>`).join('')}</IPAddresses>` +
    `</ClientLocationInfo></WSUSLocationRequest>`
  );
}

export function buildWsusLocationReply(r: WsusLocationReply): string {
  return (
    `<WSUSLocationReply SchemaVersion="${WSUS_LOCATION_SCHEMA_VERSION}"><Sites>` +
    r.sites
      .map(
        (s) =>
          `<Site><MPSite SiteCode="${esc(s.siteCode)}"/><LocationRecords>` +
          s.records.map((l) => `<LocationRecord WSUSURL="${esc(l.url)}" ServerName="${esc(l.serverName)}" Version="${l.version}"/>`).join('') +
          `</LocationRecords></Site>`,
      )
      .join('') +
    `</Sites></WSUSLocationReply>`
  );
}

const parser = new XMLParser({
  ...XML_PARSER_OPTIONS,
  isArray: (name) => name === 'IPAddress' || name === 'Site' || name === 'LocationRecord',
});

type Node = Record<string, unknown>;

function list(node: unknown, name: string): unknown[] {
  const v = child(node, name);
  return Array.isArray(v) ? v : v === undefined || v === '' ? [] : [v];
}

function parseDoc(xml: string, root: string, code: ErrorCode): Node {
  const fail = (why: string): never => {
    throw new CairnError(code, why);
  };
  if (Buffer.byteLength(xml) > MAX_WSUS_LOCATION_BYTES) fail(`the ${root} is larger than ${MAX_WSUS_LOCATION_BYTES} bytes`);
  const trimmed = xml.trim();
  if (!trimmed) fail(`the body is empty, not a ${root}`);
  const valid = XMLValidator.validate(trimmed);
  if (valid !== true) fail(`the body is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  const doc = parser.parse(trimmed) as Node;
  const node = doc[root];
  if (node === undefined) fail(`the XML is not a ${root} (root ${Object.keys(doc)[0] ?? 'none'})`);
  const version = attrs(node).SchemaVersion;
  if (version !== WSUS_LOCATION_SCHEMA_VERSION) fail(`${root} SchemaVersion is ${JSON.stringify(version ?? null)}, not "${WSUS_LOCATION_SCHEMA_VERSION}"`);
  return (node && typeof node === 'object' ? node : {}) as Node;
}

const GUID_BRACED_RE = /^\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?$/;
const IP_RE = /^[0-9A-Fa-f.:%a-z]{1,45}$/;

function positiveInt(v: string | undefined, what: string, code: ErrorCode): number {
  if (v === undefined || !/^\d{1,9}$/.test(v) || Number(v) < 1) throw new CairnError(code, `${what} is ${JSON.stringify(v ?? null)}, not a positive integer`);
  return Number(v);
}

/** Parses a `WSUSLocationRequest` at the MP; anything malformed is `CAIRN_WSUS_LOCATION_REQUEST_INVALID`. */
export function parseWsusLocationRequest(xml: string): WsusLocationRequest {
  const code = 'CAIRN_WSUS_LOCATION_REQUEST_INVALID';
  const fail = (why: string): never => {
    throw new CairnError(code, why);
  };
  const root = parseDoc(xml, 'WSUSLocationRequest', code);
  const content = attrs(root.Content);
  if (root.Content === undefined) fail('Content is missing');
  const contentId = content.ID ?? '';
  if (!GUID_BRACED_RE.test(contentId)) fail(`Content ID ${JSON.stringify(contentId)} is not an update source ID ({GUID})`);
  const version = positiveInt(content.Version, 'Content Version', code);
  if (root.AssignedSite === undefined) fail('AssignedSite is missing');
  const assignedSite = attrs(root.AssignedSite).SiteCode ?? '';
  if (!/^[A-Za-z0-9]{3}$/.test(assignedSite)) fail(`AssignedSite SiteCode ${JSON.stringify(assignedSite)} is not a site code`);
  const info = root.ClientLocationInfo;
  if (info === undefined) fail('ClientLocationInfo is missing');
  const onInternet = attrs(info).OnInternet ?? '0';
  if (onInternet !== '0' && onInternet !== '1') fail(`ClientLocationInfo OnInternet is ${JSON.stringify(onInternet)}, not 0 or 1`);
  const name = (n: string): string => {
    const v = attrs(child(info, n)).Name ?? '';
    if (v.length > 256) fail(`${n} Name is longer than 256 characters`);
    return v;
  };
  const addresses = list(child(info, 'IPAddresses'), 'IPAddress');
  if (addresses.length > MAX_LOCATION_ADDRESSES) fail(`more than ${MAX_LOCATION_ADDRESSES} IPAddress elements`);
  const ipAddresses = addresses.map((n, i): ClientIpAddress => {
    const a = attrs(n);
    const address = a.Address ?? '';
    const subnetAddress = a.SubnetAddress ?? '';
    if (!IP_RE.test(address)) fail(`IPAddress ${i + 1}: Address ${JSON.stringify(address.slice(0, 60))} is not an IP address`);
    if (subnetAddress && !IP_RE.test(subnetAddress)) fail(`IPAddress ${i + 1}: SubnetAddress ${JSON.stringify(subnetAddress.slice(0, 60))} is not an IP address`);
    return { subnetAddress, address };
  });
  return { contentId, version, assignedSite: assignedSite.toUpperCase(), onInternet: onInternet === '1', adSite: name('ADSite'), forest: name('Forest'), domain: name('Domain'), ipAddresses };
}

/**
 * Parses a `WSUSLocationReply` at the client. A reply that is not one is
 * `CAIRN_AGENT_MP_REPLY_INVALID`; a single record without an http(s) URL or a
 * version is dropped and returned in `ignored`, so that one bad record does
 * not cost the good ones.
 */
export function parseWsusLocationReply(xml: string): { reply: WsusLocationReply; ignored: string[] } {
  const code = 'CAIRN_AGENT_MP_REPLY_INVALID';
  const root = parseDoc(xml, 'WSUSLocationReply', code);
  const ignored: string[] = [];
  const sites = list(child(root, 'Sites'), 'Site').map((s) => {
    const siteCode = attrs(child(s, 'MPSite')).SiteCode ?? '';
    const records: WsusLocationRecord[] = [];
    for (const r of list(child(s, 'LocationRecords'), 'LocationRecord')) {
      const a = attrs(r);
      const url = a.WSUSURL ?? '';
      let ok: boolean;
      try {
        const u = new URL(url);
        ok = u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        ok = false;
      }
      const version = a.Version !== undefined && /^\d{1,9}$/.test(a.Version) ? Number(a.Version) : undefined;
      if (!ok || version === undefined) {
        ignored.push(`WSUSURL=${JSON.stringify(url.slice(0, 200))} Version=${JSON.stringify(a.Version ?? null)}`);
        continue;
      }
      records.push({ url, serverName: a.ServerName ?? new URL(url).hostname, version });
    }
    return { siteCode, records };
  });
  return { reply: { sites }, ignored };
}
