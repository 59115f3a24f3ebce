/** SQL for status messages with their insertion strings and attributes. */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.ts';
import type { Level, Severity, StatusMessage } from '../shared/status-message.ts';
import { ATTR } from '../shared/status-message.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** Inserts one message unless its DedupKey is already stored. Returns true when inserted. */
export async function insertStatusMessage(trx: Db, msg: StatusMessage, dedupKey: string): Promise<boolean> {
  const row = await trx
    .insertInto('StatusMessages')
    .values({
      MessageID: msg.id,
      Severity: msg.severity,
      Level: msg.level,
      Source: msg.source,
      Component: msg.component,
      MachineName: msg.machine,
      SiteCode: msg.site,
      ProcessID: msg.pid,
      ThreadID: msg.tid,
      Time: msg.time,
      DedupKey: dedupKey,
    })
    .onConflict((oc) => oc.column('DedupKey').doNothing())
    .returning('RecordID')
    .executeTakeFirst();
  if (!row) return false;
  const recordId = Number(row.RecordID);
  if (msg.istr.length) await trx.insertInto('StatusMessageInsStrs').values(msg.istr.map((v, i) => ({ RecordID: recordId, InsStrIndex: i, InsStrValue: v }))).execute();
  if (msg.attrs.length) await trx.insertInto('StatusMessageAttributes').values(msg.attrs.map((a) => ({ RecordID: recordId, AttributeID: a.id, AttributeValue: a.value }))).execute();
  return true;
}

/** A stored message: what was raised, plus the row's record ID. */
export type StoredStatusMessage = StatusMessage & { readonly recordId: number };

export async function queryStatusMessages(db: Db, filter: { packageId?: string; component?: string; messageId?: number; limit?: number }): Promise<StoredStatusMessage[]> {
  let q = db.selectFrom('StatusMessages as m').selectAll('m');
  if (filter.component) q = q.where('m.Component', '=', filter.component);
  if (filter.messageId !== undefined) q = q.where('m.MessageID', '=', filter.messageId);
  if (filter.packageId) {
    const pkg = filter.packageId;
    q = q.where((eb) =>
      eb.exists(
        eb
          .selectFrom('StatusMessageAttributes as a')
          .select('a.RecordID')
          .whereRef('a.RecordID', '=', 'm.RecordID')
          .where('a.AttributeID', '=', ATTR.packageId)
          .where('a.AttributeValue', '=', pkg),
      ),
    );
  }
  const rows = await q.orderBy('m.Time').orderBy('m.RecordID').limit(filter.limit ?? 1000).execute();
  if (!rows.length) return [];
  const ids = rows.map((r) => Number(r.RecordID));
  const strs = await db.selectFrom('StatusMessageInsStrs').selectAll().where('RecordID', 'in', ids).orderBy('InsStrIndex').execute();
  const attrs = await db.selectFrom('StatusMessageAttributes').selectAll().where('RecordID', 'in', ids).execute();
  return rows.map((r) => {
    const id = Number(r.RecordID);
    return {
      recordId: id,
      id: r.MessageID,
      severity: r.Severity as Severity,
      level: r.Level as Level,
      source: r.Source,
      component: r.Component,
      machine: r.MachineName,
      site: r.SiteCode,
      pid: r.ProcessID,
      tid: r.ThreadID,
      time: r.Time,
      istr: strs.filter((s) => Number(s.RecordID) === id).map((s) => s.InsStrValue),
      attrs: attrs.filter((a) => Number(a.RecordID) === id).map((a) => ({ id: a.AttributeID, value: a.AttributeValue })),
    };
  });
}
