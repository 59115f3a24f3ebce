/**
 * SQL for state messages (migration 0003): the latest state per (client,
 * topic type, topic ID) in `StateMsg`, every valid message once in
 * `StateMsgHistory`, and the friendly names in `SR_TopicTypes` and
 * `SR_StateNames`.
 *
 * The latest-state rule is in the SQL, so that it holds however messages
 * arrive and whichever process writes: a stored row is replaced only by a
 * message with a higher serial number AND a message time that is not older
 * (`LATEST_RULE`). Everything here is idempotent: storing the same records
 * twice changes nothing, which is what makes a re-read `.SMX` harmless.
 *
 * Topic type 500 (update detection, topic ID = update ID) also keeps the
 * client's row in `Update_ComplianceStatus` (migration 0007) by the same rule,
 * in the same statements' transaction, so the two never disagree.
 */
import { PostgresAdapter, sql } from 'kysely';
import type { Kysely, Transaction } from 'kysely';
import type { Database, StateMsgTable } from './schema.ts';
import type { Insertable } from 'kysely';
import type { StateRecord } from '../shared/state-report.ts';

type Db = Kysely<Database> | Transaction<Database>;

/** The rule, in words, for logs and docs. */
export const LATEST_RULE = 'a message replaces the stored state only when its serial number is higher and its message time is not older';

/**
 * Rows per INSERT statement. 14 columns × 1,000 rows stays under SQLite's
 * 32,766 and PostgreSQL's 65,535 bound parameters.
 */
const ROWS_PER_STATEMENT = 1000;

function toRow(r: StateRecord, receivedTime: string): Insertable<StateMsgTable> {
  return {
    ClientID: r.clientId,
    TopicType: r.topicType,
    TopicID: r.topicId,
    StateID: r.stateId,
    Criticality: r.criticality,
    SerialNumber: r.serialNumber,
    MessageTime: r.messageTime,
    NetBIOSName: r.netbiosName,
    IDType: r.idType,
    UserName: r.user,
    UserSID: r.userSid,
    UserFlags: r.userFlags,
    UserParams: JSON.stringify(r.userParams),
    ReceivedTime: receivedTime,
  };
}

/** Topic type 500, update detection (REFERENCE.md): states 0 unknown, 1 not required, 2 required, 3 installed. */
export const UPDATE_DETECTION_TOPIC = 500;
/** Whether a record sets a client's compliance for an update: topic 500 with a state the table knows. */
const isCompliance = (r: StateRecord): boolean => r.topicType === UPDATE_DETECTION_TOPIC && r.stateId >= 0 && r.stateId <= 3;

const keyOf = (r: StateRecord): string => `${r.clientId}\u0000${r.topicType}\u0000${r.topicId}`;

export interface StoreResult {
  /** Records that became the latest state of their topic. */
  readonly applied: number;
  /** Records that were already in the history (a re-read file or a replayed message). */
  readonly duplicates: number;
}

/**
 * Stores valid records in one transaction's worth of statements: appends them
 * to the history, then applies the latest-state rule. Call it inside a
 * transaction so that history and latest state commit together.
 *
 * Records for the same topic are applied in the order given, in rounds of one
 * record per topic, because one INSERT … ON CONFLICT DO UPDATE may not touch
 * a row twice (PostgreSQL refuses it) and the rule is not a total order, so
 * the outcome must be the one of applying the messages one after the other.
 */
export async function storeStateRecords(trx: Db, records: readonly StateRecord[], receivedTime: string): Promise<StoreResult> {
  if (trx.getExecutor().adapter instanceof PostgresAdapter) return storeStateRecordsPg(trx, records, receivedTime);
  let inserted = 0;
  for (let i = 0; i < records.length; i += ROWS_PER_STATEMENT) {
    const rows = records.slice(i, i + ROWS_PER_STATEMENT).map((r) => toRow(r, receivedTime));
    const res = await trx
      .insertInto('StateMsgHistory')
      .values(rows)
      .onConflict((oc) => oc.columns(['ClientID', 'TopicType', 'TopicID', 'SerialNumber']).doNothing())
      .executeTakeFirst();
    inserted += Number(res.numInsertedOrUpdatedRows ?? 0);
  }

  const rounds = intoRounds(records);
  let applied = 0;
  for (const round of rounds) {
    for (let i = 0; i < round.length; i += ROWS_PER_STATEMENT) {
      const rows = round.slice(i, i + ROWS_PER_STATEMENT).map((r) => toRow(r, receivedTime));
      const res = await trx
        .insertInto('StateMsg')
        .values(rows)
        .onConflict((oc) =>
          oc
            .columns(['ClientID', 'TopicType', 'TopicID'])
            .doUpdateSet((eb) => ({
              StateID: eb.ref('excluded.StateID'),
              Criticality: eb.ref('excluded.Criticality'),
              SerialNumber: eb.ref('excluded.SerialNumber'),
              MessageTime: eb.ref('excluded.MessageTime'),
              NetBIOSName: eb.ref('excluded.NetBIOSName'),
              IDType: eb.ref('excluded.IDType'),
              UserName: eb.ref('excluded.UserName'),
              UserSID: eb.ref('excluded.UserSID'),
              UserFlags: eb.ref('excluded.UserFlags'),
              UserParams: eb.ref('excluded.UserParams'),
              ReceivedTime: eb.ref('excluded.ReceivedTime'),
            }))
            // LATEST_RULE. Times are fixed-width ISO 8601 UTC text: text order is time order.
            .where(({ eb, and, ref }) => and([eb(ref('excluded.SerialNumber'), '>', ref('StateMsg.SerialNumber')), eb(ref('excluded.MessageTime'), '>=', ref('StateMsg.MessageTime'))])),
        )
        .executeTakeFirst();
      applied += Number(res.numInsertedOrUpdatedRows ?? 0);
    }
    const compliance = round.filter(isCompliance);
    for (let i = 0; i < compliance.length; i += ROWS_PER_STATEMENT) {
      const rows = compliance.slice(i, i + ROWS_PER_STATEMENT).map((r) => ({ ClientID: r.clientId, CI_UniqueID: r.topicId, Status: r.stateId, SerialNumber: r.serialNumber, MessageTime: r.messageTime, LastStatusTime: receivedTime }));
      await trx
        .insertInto('Update_ComplianceStatus')
        .values(rows)
        .onConflict((oc) =>
          oc
            .columns(['ClientID', 'CI_UniqueID'])
            .doUpdateSet((eb) => ({ Status: eb.ref('excluded.Status'), SerialNumber: eb.ref('excluded.SerialNumber'), MessageTime: eb.ref('excluded.MessageTime'), LastStatusTime: eb.ref('excluded.LastStatusTime') }))
            // LATEST_RULE, as for StateMsg above.
            .where(({ eb, and, ref }) => and([eb(ref('excluded.SerialNumber'), '>', ref('Update_ComplianceStatus.SerialNumber')), eb(ref('excluded.MessageTime'), '>=', ref('Update_ComplianceStatus.MessageTime'))])),
        )
        .execute();
    }
  }
  return { applied, duplicates: records.length - inserted };
}

/**
 * Rows per statement on PostgreSQL: the rows go as 13 array parameters
 * (`unnest`), not as 13 parameters a row, so a statement can be large.
 */
const PG_ROWS_PER_STATEMENT = 20_000;

/** The columns in the order of the `unnest` arrays, with their PostgreSQL array types. */
const PG_COLUMNS = [
  ['ClientID', 'text'],
  ['TopicType', 'int4'],
  ['TopicID', 'text'],
  ['StateID', 'int4'],
  ['Criticality', 'int4'],
  ['SerialNumber', 'int8'],
  ['MessageTime', 'text'],
  ['NetBIOSName', 'text'],
  ['IDType', 'int4'],
  ['UserName', 'text'],
  ['UserSID', 'text'],
  ['UserFlags', 'int4'],
  ['UserParams', 'text'],
] as const;

function pgArrays(records: readonly StateRecord[]): unknown[][] {
  const cols: unknown[][] = PG_COLUMNS.map(() => new Array<unknown>(records.length));
  records.forEach((r, i) => {
    const v = [r.clientId, r.topicType, r.topicId, r.stateId, r.criticality, r.serialNumber, r.messageTime, r.netbiosName, r.idType, r.user, r.userSid, r.userFlags, JSON.stringify(r.userParams)];
    for (let c = 0; c < v.length; c += 1) cols[c]![i] = v[c];
  });
  return cols;
}

/** `SELECT … FROM unnest($1::text[], …)` with the received time as the last column. */
function pgSource(records: readonly StateRecord[], receivedTime: string) {
  const arrays = pgArrays(records);
  const args = sql.join(PG_COLUMNS.map(([, type], c) => sql`${arrays[c]}::${sql.raw(type)}[]`));
  const names = sql.join(PG_COLUMNS.map(([name]) => sql.ref(name)));
  return sql`SELECT u.*, ${receivedTime}::text AS "ReceivedTime" FROM unnest(${args}) AS u(${names})`;
}

const PG_TARGET_COLUMNS = sql.join([...PG_COLUMNS.map(([name]) => sql.ref(name)), sql.ref('ReceivedTime')]);

/**
 * Splits records into rounds in which each (client, topic type, topic) key
 * appears at most once: one upsert statement may not touch a row twice, so
 * the n-th record of a key goes in round n (ordered by the latest-state rule
 * in the upsert itself).
 */
function intoRounds(records: readonly StateRecord[]): StateRecord[][] {
  const rounds: StateRecord[][] = [];
  const seen = new Map<string, number>();
  for (const r of records) {
    const k = keyOf(r);
    const n = seen.get(k) ?? 0;
    seen.set(k, n + 1);
    (rounds[n] ??= []).push(r);
  }
  return rounds;
}

/**
 * The same as the SQLite path above, same rounds and same rule, with each
 * statement's rows sent as one array per column (`unnest`): PostgreSQL
 * parses and binds 14 parameters instead of 14 a row (docs/performance.md,
 * "State messages").
 */
async function storeStateRecordsPg(trx: Db, records: readonly StateRecord[], receivedTime: string): Promise<StoreResult> {
  let inserted = 0;
  for (let i = 0; i < records.length; i += PG_ROWS_PER_STATEMENT) {
    const res = await sql`INSERT INTO "StateMsgHistory" (${PG_TARGET_COLUMNS}) ${pgSource(records.slice(i, i + PG_ROWS_PER_STATEMENT), receivedTime)} ON CONFLICT ("ClientID", "TopicType", "TopicID", "SerialNumber") DO NOTHING`.execute(trx);
    inserted += Number(res.numAffectedRows ?? 0);
  }
  const rounds = intoRounds(records);
  const updated = sql.join(['StateID', 'Criticality', 'SerialNumber', 'MessageTime', 'NetBIOSName', 'IDType', 'UserName', 'UserSID', 'UserFlags', 'UserParams', 'ReceivedTime'].map((c) => sql`${sql.ref(c)} = excluded.${sql.ref(c)}`));
  let applied = 0;
  for (const round of rounds) {
    for (let i = 0; i < round.length; i += PG_ROWS_PER_STATEMENT) {
      // LATEST_RULE. Times are fixed-width ISO 8601 UTC text: text order is time order.
      const res = await sql`INSERT INTO "StateMsg" (${PG_TARGET_COLUMNS}) ${pgSource(round.slice(i, i + PG_ROWS_PER_STATEMENT), receivedTime)} ON CONFLICT ("ClientID", "TopicType", "TopicID") DO UPDATE SET ${updated} WHERE excluded."SerialNumber" > "StateMsg"."SerialNumber" AND excluded."MessageTime" >= "StateMsg"."MessageTime"`.execute(trx);
      applied += Number(res.numAffectedRows ?? 0);
    }
    const compliance = round.filter(isCompliance);
    for (let i = 0; i < compliance.length; i += PG_ROWS_PER_STATEMENT) {
      const part = compliance.slice(i, i + PG_ROWS_PER_STATEMENT);
      // LATEST_RULE, as for StateMsg above.
      await sql`INSERT INTO "Update_ComplianceStatus" ("ClientID", "CI_UniqueID", "Status", "SerialNumber", "MessageTime", "LastStatusTime")
        SELECT u.*, ${receivedTime}::text FROM unnest(${part.map((r) => r.clientId)}::text[], ${part.map((r) => r.topicId)}::text[], ${part.map((r) => r.stateId)}::int4[], ${part.map((r) => r.serialNumber)}::int8[], ${part.map((r) => r.messageTime)}::text[]) AS u
        ON CONFLICT ("ClientID", "CI_UniqueID") DO UPDATE SET "Status" = excluded."Status", "SerialNumber" = excluded."SerialNumber", "MessageTime" = excluded."MessageTime", "LastStatusTime" = excluded."LastStatusTime"
        WHERE excluded."SerialNumber" > "Update_ComplianceStatus"."SerialNumber" AND excluded."MessageTime" >= "Update_ComplianceStatus"."MessageTime"`.execute(trx);
    }
  }
  return { applied, duplicates: records.length - inserted };
}

export interface LatestStateFilter {
  /** Client ID or NetBIOS name, exactly. */
  readonly client?: string;
  readonly topicType?: number;
  readonly limit?: number;
}

export interface LatestStateRow {
  readonly ClientID: string;
  readonly NetBIOSName: string;
  readonly TopicType: number;
  readonly TopicTypeName: string | null;
  readonly TopicID: string;
  readonly StateID: number;
  readonly StateName: string | null;
  readonly Criticality: number;
  readonly SerialNumber: number;
  readonly MessageTime: string;
  readonly ReceivedTime: string;
  readonly UserParams: string;
}

/** The latest states with their friendly names, ordered by client, topic type and topic. */
export async function listLatestStates(db: Db, filter: LatestStateFilter = {}): Promise<LatestStateRow[]> {
  let q = db
    .selectFrom('StateMsg as s')
    .leftJoin('SR_TopicTypes as t', 't.TopicType', 's.TopicType')
    .leftJoin('SR_StateNames as n', (j) => j.onRef('n.TopicType', '=', 's.TopicType').onRef('n.StateID', '=', 's.StateID'))
    .select(['s.ClientID', 's.NetBIOSName', 's.TopicType', 't.TopicTypeName', 's.TopicID', 's.StateID', 'n.StateName', 's.Criticality', 's.SerialNumber', 's.MessageTime', 's.ReceivedTime', 's.UserParams']);
  if (filter.client) {
    const c = filter.client;
    q = q.where((eb) => eb.or([eb('s.ClientID', '=', c), eb('s.NetBIOSName', '=', c)]));
  }
  if (filter.topicType !== undefined) q = q.where('s.TopicType', '=', filter.topicType);
  const rows = await q.orderBy('s.ClientID').orderBy('s.TopicType').orderBy('s.TopicID').limit(filter.limit ?? 10000).execute();
  return rows.map((r) => ({ ...r, SerialNumber: Number(r.SerialNumber) }));
}

/** Every history row of one topic of one client, oldest serial first. */
export async function stateHistory(db: Db, clientId: string, topicType: number, topicId: string): Promise<{ SerialNumber: number; StateID: number; MessageTime: string }[]> {
  const rows = await db
    .selectFrom('StateMsgHistory')
    .select(['SerialNumber', 'StateID', 'MessageTime'])
    .where('ClientID', '=', clientId)
    .where('TopicType', '=', topicType)
    .where('TopicID', '=', topicId)
    .orderBy('SerialNumber')
    .execute();
  return rows.map((r) => ({ ...r, SerialNumber: Number(r.SerialNumber) }));
}

/** Friendly names: every topic type with its states. */
export async function listStateNames(db: Db): Promise<{ TopicType: number; TopicTypeName: string; StateID: number | null; StateName: string | null }[]> {
  return db
    .selectFrom('SR_TopicTypes as t')
    .leftJoin('SR_StateNames as n', 'n.TopicType', 't.TopicType')
    .select(['t.TopicType', 't.TopicTypeName', 'n.StateID', 'n.StateName'])
    .orderBy('t.TopicType')
    .orderBy('n.StateID')
    .execute();
}

/** Counts rows of a state table, for tests and the benchmark. */
export async function countStateRows(db: Db, table: 'StateMsg' | 'StateMsgHistory'): Promise<number> {
  const r = await db.selectFrom(table).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}
