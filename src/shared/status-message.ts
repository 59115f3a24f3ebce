/**
 * Status messages (spec 40, `STATMSG`): events a component raises, with an ID,
 * severity, level, insertion strings and attributes. A component logs the full
 * STATMSG line in its own log and drops an `.SVF` file into
 * `statmgr.box/statmsgs`; the status manager stores it.
 *
 * The `.SVF` body is ours (the seeds never show one): JSON
 * `{ "format": "cairn-svf/1", "messages": [StatusMessage, ...] }`.
 */
import os from 'node:os';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import type { ComponentLog } from './cmtrace-log.ts';
import { writeInboxFile } from './inbox.ts';

export const SEVERITIES = ['I', 'W', 'E'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const LEVELS = ['M', 'D'] as const;
export type Level = (typeof LEVELS)[number];

/** Attribute IDs the seeds show (spec 40). */
export const ATTR = { packageId: 400, dp: 404, clientId: 408, packageVersion: 410 } as const;

export interface StatusAttribute {
  readonly id: number;
  readonly value: string;
}

export interface StatusMessage {
  readonly id: number;
  readonly severity: Severity;
  readonly level: Level;
  readonly source: string;
  readonly component: string;
  readonly machine: string;
  readonly site: string;
  readonly pid: number;
  readonly tid: number;
  /** ISO 8601 time with milliseconds. */
  readonly time: string;
  /** Up to ten insertion strings, ISTR0–ISTR9. */
  readonly istr: readonly string[];
  readonly attrs: readonly StatusAttribute[];
}

export const SVF_FORMAT = 'cairn-svf/1';

/** Formats the STATMSG log line as in the seeds. */
export function formatStatmsg(msg: StatusMessage): string {
  const d = new Date(msg.time);
  const gmt = d.toUTCString().replace(/ GMT$/, '').replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+)$/, '$1 $3 $2 $5') + `.${String(d.getUTCMilliseconds()).padStart(3, '0')} ${d.getUTCFullYear()}`;
  const istr = Array.from({ length: 10 }, (_, i) => `ISTR${i}="${msg.istr[i] ?? ''}"`).join(' ');
  const attrs = msg.attrs.map((a, i) => `AID${i}=${a.id} AVAL${i}="${a.value}"`).join(' ');
  return `STATMSG: ID=${msg.id} SEV=${msg.severity} LEV=${msg.level} SOURCE="${msg.source}" COMP="${msg.component}" SYS=${msg.machine} SITE=${msg.site} PID=${msg.pid} TID=${msg.tid} GMTDATE=${gmt} ${istr} NUMATTRS=${msg.attrs.length}${attrs ? ' ' + attrs : ''}`;
}

export interface RaiseOptions {
  readonly severity?: Severity;
  readonly level?: Level;
  readonly istr?: readonly string[];
  readonly attrs?: readonly StatusAttribute[];
  readonly tid?: number;
}

/** What a component uses to raise status messages. */
export interface StatusReporter {
  raise(id: number, options?: RaiseOptions): Promise<StatusMessage>;
}

let sequence = 0;

export function createStatusReporter(opts: {
  readonly component: string;
  readonly site: string;
  readonly statmsgsDir: string;
  readonly log: ComponentLog;
}): StatusReporter {
  const machine = os.hostname();
  return {
    async raise(id, options = {}) {
      const msg: StatusMessage = {
        id,
        severity: options.severity ?? 'I',
        level: options.level ?? 'M',
        source: 'SMS Server',
        component: opts.component,
        machine,
        site: opts.site,
        pid: process.pid,
        tid: options.tid ?? threadId,
        time: new Date().toISOString(),
        istr: (options.istr ?? []).slice(0, 10),
        attrs: options.attrs ?? [],
      };
      const line = formatStatmsg(msg);
      if (msg.severity === 'E') opts.log.error(line, options.tid);
      else if (msg.severity === 'W') opts.log.warn(line, options.tid);
      else opts.log.info(line, options.tid);
      // The name sorts in raise order within a process, so the status manager
      // inserts messages in the order they were raised.
      sequence += 1;
      const name = `${Date.now().toString().padStart(14, '0')}-${process.pid}-${String(sequence).padStart(9, '0')}.SVF`;
      await writeInboxFile(opts.statmsgsDir, name, JSON.stringify({ format: SVF_FORMAT, messages: [msg] }));
      return msg;
    },
  };
}

/** Parses an `.SVF` body; throws on anything that is not a valid message list. */
export function parseSvf(body: string): StatusMessage[] {
  const doc = JSON.parse(body) as unknown;
  if (!doc || typeof doc !== 'object' || (doc as { format?: unknown }).format !== SVF_FORMAT) throw new Error('not a cairn-svf/1 document');
  const messages = (doc as { messages?: unknown }).messages;
  if (!Array.isArray(messages)) throw new Error('messages is not a list');
  return messages.map((m, i) => {
    const o = m as Record<string, unknown>;
    const bad = (what: string): never => {
      throw new Error(`message ${i}: ${what}`);
    };
    if (!Number.isInteger(o.id)) bad('id is not an integer');
    if (!SEVERITIES.includes(o.severity as Severity)) bad('bad severity');
    if (!LEVELS.includes(o.level as Level)) bad('bad level');
    for (const k of ['source', 'component', 'machine', 'site', 'time'] as const) if (typeof o[k] !== 'string') bad(`${k} is not a string`);
    if (Number.isNaN(Date.parse(o.time as string))) bad('time is not a date');
    if (!Array.isArray(o.istr) || o.istr.length > 10 || !o.istr.every((s) => typeof s === 'string')) bad('istr is not a list of at most 10 strings');
    if (!Array.isArray(o.attrs) || !o.attrs.every((a) => a && Number.isInteger(a.id) && typeof a.value === 'string')) bad('attrs is not a list of {id, value}');
    return {
      id: o.id as number,
      severity: o.severity as Severity,
      level: o.level as Level,
      source: o.source as string,
      component: o.component as string,
      machine: o.machine as string,
      site: o.site as string,
      pid: Number(o.pid) || 0,
      tid: Number(o.tid) || 0,
      time: o.time as string,
      istr: o.istr as string[],
      attrs: (o.attrs as StatusAttribute[]).map((a) => ({ id: a.id, value: a.value })),
    };
  });
}

export function statmsgsDir(inboxesDir: string): string {
  return path.join(inboxesDir, 'statmgr.box', 'statmsgs');
}
