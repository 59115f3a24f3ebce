/**
 * State-message reports (spec 30, section 4): the `Report` XML a client posts
 * to the MP relay, parsed at the edge into typed records (STYLE.md,
 * convention 5). The MP relay parses a body before it writes the `.SMX`; the
 * state system parses the file again on a worker thread before it stores
 * anything.
 *
 * Two levels of failure, because a bad message must not cost the good ones:
 * - the report as a whole (not XML, not a state-message `Report`, no client
 *   ID, too large) throws a CairnError: the relay answers 400/413, the state
 *   system moves the file to `bad/`;
 * - one `StateMessage` (a missing or malformed field, an unknown topic type,
 *   a message time in the future) is returned in `invalid` with its code; the
 *   others are kept. The state system counts them as invalid records.
 *
 * The parser accepts the seed's example exactly as the spec shows it (see
 * test/fixtures/state-report-spec.xml). It never touches the database or the
 * file system.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { CairnError } from './errors.ts';
import type { ErrorCode } from './errors.ts';

/**
 * Topic types the state system knows (REFERENCE.md, "State-message topic
 * types") and 901, ours (content deployment, ADR 0005); a message with any
 * other topic type is an invalid record. The friendly names live in
 * `SR_TopicTypes`/`SR_StateNames` (migrations 0003 and 0005).
 */
export const STATE_TOPIC_TYPES = [300, 301, 302, 500, 501, 900, 901, 902] as const;
export type StateTopicType = (typeof STATE_TOPIC_TYPES)[number];

/** Ours: the largest report the relay and the state system accept (4 MiB, about 10,000 state messages). */
export const MAX_REPORT_BYTES = 4 * 1024 * 1024;

/**
 * Ours: how far ahead of the receiving server's clock a message time may be.
 * The latest-state rule never lets an older message time overwrite a newer
 * one, so one message from a client whose clock is years ahead would pin its
 * topic forever; such a message is an invalid record instead.
 */
export const MAX_CLOCK_AHEAD_MS = 24 * 60 * 60 * 1000;

const MAX_TEXT = 256;
const MAX_PARAMS = 32;

/** Who sent the report (`ReportHeader/Identification/Machine`). */
export interface StateReportClient {
  readonly clientId: string;
  readonly netbiosName: string;
  readonly clientVersion: string;
  /** Message priority (spec 30, section 4 step 2); 5 when absent. */
  readonly priority: number;
}

/** One valid `StateMessage`, with its sender. */
export interface StateRecord {
  readonly clientId: string;
  readonly netbiosName: string;
  /** ISO 8601 UTC, millisecond precision. */
  readonly messageTime: string;
  readonly serialNumber: number;
  readonly topicType: StateTopicType;
  readonly topicId: string;
  readonly idType: number;
  readonly user: string;
  readonly userSid: string;
  readonly stateId: number;
  readonly criticality: number;
  readonly userFlags: number;
  readonly userParams: readonly string[];
}

export interface InvalidStateRecord {
  /** Position of the `StateMessage` in the report, from 0. */
  readonly index: number;
  readonly code: ErrorCode;
  readonly reason: string;
}

export interface StateReport {
  readonly client: StateReportClient;
  readonly records: readonly StateRecord[];
  readonly invalid: readonly InvalidStateRecord[];
}

export interface ParseOptions {
  /** The receiving server's clock, for the future-time check. */
  readonly now?: number;
  readonly maxBytes?: number;
}

/**
 * How the client XML messages (the state `Report`, the WSUS location
 * messages) are parsed: attributes under `@`, values kept as text, no
 * declaration. Entities are decoded by `decodeXml` in the few text values
 * we keep: the parser's own entity pass over every value costs a third of
 * the parse.
 */
export const XML_PARSER_OPTIONS = {
  ignoreAttributes: false,
  attributeNamePrefix: '',
  attributesGroupName: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  ignoreDeclaration: true,
  processEntities: false,
} as const;

const parser = new XMLParser({
  ...XML_PARSER_OPTIONS,
  isArray: (name) => name === 'StateMessage' || name === 'Param',
});

type Node = Record<string, unknown>;

const ENTITIES: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes XML's five named entities and character references; anything else is left as written. */
export function decodeXml(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/g, (whole, ref: string) => {
    if (ref[0] === '#') {
      const cp = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return cp <= 0x10ffff ? String.fromCodePoint(cp) : whole;
    }
    return ENTITIES[ref] ?? whole;
  });
}

/** A child element (or the `@` attribute group) of a parsed node; undefined when absent. Shared with the location messages. */
export function child(node: unknown, name: string): unknown {
  return node && typeof node === 'object' ? (node as Node)[name] : undefined;
}

/** A parsed node's attributes, entities decoded. */
export function attrs(node: unknown): Record<string, string> {
  const a = child(node, '@');
  if (!a || typeof a !== 'object') return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a)) out[k] = decodeXml(String(v));
  return out;
}

/** Text content of an element: a plain string, or `#text` beside attributes; '' when empty. */
function text(node: unknown): string | undefined {
  if (typeof node === 'string') return decodeXml(node.trim());
  if (node && typeof node === 'object') {
    const t = (node as Node)['#text'];
    if (typeof t === 'string') return decodeXml(t.trim());
    if (Object.keys(node).every((k) => k === '@')) return '';
  }
  return undefined;
}

class RecordError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function invalid(what: string): never {
  throw new RecordError('CAIRN_STATE_MESSAGE_INVALID', what);
}

function int(value: string | undefined, what: string, fallback?: number): number {
  if (value === undefined || value === '') {
    if (fallback !== undefined) return fallback;
    invalid(`${what} is missing`);
  }
  if (!/^-?\d{1,15}$/.test(value)) invalid(`${what} is not an integer: ${JSON.stringify(value.slice(0, 40))}`);
  return Number(value);
}

function short(value: string | undefined, what: string, required: boolean): string {
  const v = (value ?? '').trim();
  if (required && !v) invalid(`${what} is missing`);
  if (v.length > MAX_TEXT) invalid(`${what} is longer than ${MAX_TEXT} characters`);
  return v;
}

/**
 * Parses a WMI (CIM) datetime, `yyyymmddHHMMSS.ffffff+UUU` with the offset in
 * minutes, as the seeds show (`20140120171855.573000+000`), into ISO 8601 UTC.
 * Returns undefined when it is not one.
 */
export function parseWmiDateTime(value: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.(\d{6})([+-])(\d{3})$/.exec(value.trim());
  if (!m) return undefined;
  const [y, mo, d, h, mi, s, us, sign, off] = m.slice(1).map((x, i) => (i === 7 ? x : Number(x))) as [number, number, number, number, number, number, number, string, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return undefined;
  const local = Date.UTC(y, mo - 1, d, h, mi, s, Math.floor(us / 1000));
  const check = new Date(local);
  if (check.getUTCDate() !== d || check.getUTCMonth() !== mo - 1) return undefined;
  const utc = local - (sign === '-' ? -1 : 1) * off * 60_000;
  return new Date(utc).toISOString();
}

function parseRecord(node: unknown, client: StateReportClient, now: number): StateRecord {
  const a = attrs(node);
  const timeText = a.MessageTime;
  if (!timeText) invalid('MessageTime is missing');
  const messageTime = parseWmiDateTime(timeText);
  if (!messageTime) invalid(`MessageTime is not a WMI datetime: ${JSON.stringify(timeText.slice(0, 40))}`);
  if (Date.parse(messageTime) > now + MAX_CLOCK_AHEAD_MS) invalid(`MessageTime ${messageTime} is more than a day ahead of this server's clock`);
  const serialNumber = int(a.SerialNumber, 'SerialNumber');
  if (serialNumber < 0) invalid('SerialNumber is negative');

  const topic = child(node, 'Topic');
  if (topic === undefined || Array.isArray(topic)) invalid('there must be exactly one Topic');
  const t = attrs(topic);
  const topicId = short(t.ID, 'Topic ID', true);
  const topicType = int(t.Type, 'Topic Type');
  if (!(STATE_TOPIC_TYPES as readonly number[]).includes(topicType)) throw new RecordError('CAIRN_STATE_TOPIC_UNKNOWN', `topic type ${topicType} (topic ${topicId})`);

  const state = child(node, 'State');
  if (state === undefined || Array.isArray(state)) invalid('there must be exactly one State');
  const s = attrs(state);

  let userFlags = 0;
  let userParams: string[] = [];
  const up = child(node, 'UserParameters');
  if (up !== undefined) {
    if (Array.isArray(up)) invalid('there is more than one UserParameters');
    const u = attrs(up);
    userFlags = int(u.Flags, 'UserParameters Flags', 0);
    const params = child(up, 'Param');
    userParams = (Array.isArray(params) ? params : []).map((p, i) => {
      const v = text(p);
      if (v === undefined) invalid(`Param ${i} is not text`);
      if (v.length > 4 * MAX_TEXT) invalid(`Param ${i} is too long`);
      return v;
    });
    if (userParams.length > MAX_PARAMS) invalid(`more than ${MAX_PARAMS} Params`);
    const count = int(u.Count, 'UserParameters Count', userParams.length);
    if (count !== userParams.length) invalid(`UserParameters Count is ${count} but there are ${userParams.length} Params`);
  }

  return {
    clientId: client.clientId,
    netbiosName: client.netbiosName,
    messageTime,
    serialNumber,
    topicType: topicType as StateTopicType,
    topicId,
    idType: int(t.IDType, 'Topic IDType', 0),
    user: short(t.User, 'Topic User', false),
    userSid: short(t.UserSID, 'Topic UserSID', false),
    stateId: int(s.ID, 'State ID'),
    criticality: int(s.Criticality, 'State Criticality', 0),
    userFlags,
    userParams,
  };
}

function reportInvalid(what: string): never {
  throw new CairnError('CAIRN_STATE_REPORT_INVALID', what);
}

/**
 * Parses one `Report` body. Throws CAIRN_STATE_TOO_LARGE,
 * CAIRN_STATE_XML_MALFORMED or CAIRN_STATE_REPORT_INVALID for the report as
 * a whole; returns bad `StateMessage`s in `invalid`.
 */
export function parseStateReport(xml: string, options: ParseOptions = {}): StateReport {
  const maxBytes = options.maxBytes ?? MAX_REPORT_BYTES;
  if (Buffer.byteLength(xml, 'utf8') > maxBytes) throw new CairnError('CAIRN_STATE_TOO_LARGE', `the report is larger than ${maxBytes} bytes`);
  // A DOCTYPE can declare entities that expand without bound; reports never need one.
  if (/<!DOCTYPE/i.test(xml)) throw new CairnError('CAIRN_STATE_XML_MALFORMED', 'a DOCTYPE is not allowed');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new CairnError('CAIRN_STATE_XML_MALFORMED', `${valid.err.msg} (line ${valid.err.line}, column ${valid.err.col})`);
  const doc = parser.parse(xml) as Node;
  const roots = Object.keys(doc).filter((k) => k !== '?xml');
  if (roots.length !== 1 || roots[0] !== 'Report') reportInvalid(`the root element must be Report, not ${roots.join(', ') || 'nothing'}`);
  const report = doc.Report;
  const header = child(report, 'ReportHeader');
  const machine = child(child(header, 'Identification'), 'Machine');
  if (!machine || typeof machine !== 'object') reportInvalid('ReportHeader/Identification/Machine is missing');
  const clientId = text(child(machine, 'ClientID'));
  if (!clientId) reportInvalid('ReportHeader/Identification/Machine/ClientID is missing');
  if (clientId.length > MAX_TEXT) reportInvalid('ClientID is too long');
  const content = text(child(child(header, 'ReportDetails'), 'ReportContent'));
  if (content !== undefined && content !== 'State Message Data') reportInvalid(`ReportContent is ${JSON.stringify(content.slice(0, 40))}, not "State Message Data"`);
  const priorityText = text(child(machine, 'Priority'));
  const priority = priorityText ? Number(priorityText) : 5;
  if (!Number.isInteger(priority) || priority < 0 || priority > 9) reportInvalid(`Priority ${JSON.stringify(priorityText)} is not 0-9`);
  const client: StateReportClient = {
    clientId,
    netbiosName: (text(child(machine, 'NetBIOSName')) ?? '').slice(0, MAX_TEXT),
    clientVersion: (text(child(machine, 'ClientVersion')) ?? '').slice(0, MAX_TEXT),
    priority,
  };
  const body = child(report, 'ReportBody');
  if (body === undefined) reportInvalid('ReportBody is missing');
  const messages = child(body, 'StateMessage');
  const list = Array.isArray(messages) ? messages : [];
  const now = options.now ?? Date.now();
  const records: StateRecord[] = [];
  const bad: InvalidStateRecord[] = [];
  for (const [index, node] of list.entries()) {
    try {
      records.push(parseRecord(node, client, now));
    } catch (err) {
      if (!(err instanceof RecordError)) throw err;
      bad.push({ index, code: err.code, reason: err.message });
    }
  }
  return { client, records, invalid: bad };
}
