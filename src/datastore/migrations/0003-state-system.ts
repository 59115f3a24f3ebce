/**
 * Migration 0003: the state system's tables (spec 30, section 4; issue 4,
 * part 3).
 *
 * - `StateMsg`: the latest state per (client, topic type, topic ID), with the
 *   serial number and message time of the message that set it. The state
 *   system only overwrites a row with a message whose serial number is higher
 *   and whose message time is not older (docs/architecture.md, "State
 *   messages"), so the row is the client's latest state however the messages
 *   arrive.
 * - `StateMsgHistory`: every valid state message received, once: the key
 *   (client, topic type, topic ID, serial number) makes a re-read `.SMX` file
 *   or a replayed message insert nothing twice.
 * - `SR_TopicTypes` and `SR_StateNames`: friendly names of the topic types and
 *   states in REFERENCE.md, seeded here. The rows are literal on purpose: a
 *   migration must mean the same thing forever, whatever the code says later.
 *
 * Forward-only: never edit once landed; add a new migration instead.
 */
import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see 0001-initial.ts
type AnyDb = Kysely<any>;

/** REFERENCE.md, "State-message topic types". */
const TOPIC_TYPES: readonly [number, string][] = [
  [300, 'Assignment compliance'],
  [301, 'Assignment enforcement'],
  [302, 'Assignment evaluation'],
  [500, 'Update detection'],
  [501, 'Update-source scan'],
  [900, 'Branch distribution point'],
  [902, 'Pull distribution point'],
];

/** REFERENCE.md, states per topic type (900 lists none). */
const STATE_NAMES: readonly [number, number, string][] = [
  [300, 1, 'Compliant'],
  [300, 2, 'Non-compliant'],
  [301, 1, 'Installing'],
  [301, 2, 'Waiting for restart'],
  [301, 3, 'Waiting for another installation'],
  [301, 4, 'Installed'],
  [301, 5, 'Pending system restart'],
  [301, 6, 'Failed to install'],
  [301, 7, 'Downloading'],
  [301, 8, 'Downloaded'],
  [301, 9, 'Failed to download'],
  [301, 10, 'Waiting for maintenance window'],
  [301, 11, 'Waiting for orchestration'],
  [301, 12, 'Waiting for superseding update'],
  [302, 1, 'Activated'],
  [302, 2, 'Succeeded'],
  [302, 3, 'Failed'],
  [500, 0, 'Unknown'],
  [500, 1, 'Not required'],
  [500, 2, 'Required'],
  [500, 3, 'Installed'],
  [501, 1, 'Waiting for content'],
  [501, 2, 'Running'],
  [501, 3, 'Complete'],
  [501, 4, 'Pending retry'],
  [501, 5, 'Failed'],
  [501, 6, 'Completed with errors'],
  [902, 1, 'Success'],
  [902, 2, 'Warning'],
  [902, 4, 'Failure'],
  [902, 8, 'Download started'],
  [902, 16, 'Download in progress'],
  [902, 32, 'Downloaded'],
  [902, 64, 'Canceled'],
  [902, 128, 'Cancellation requested'],
];

export async function up(db: AnyDb, _engine: Engine): Promise<void> {
  for (const table of ['StateMsg', 'StateMsgHistory']) {
    let t = db.schema
      .createTable(table)
      .addColumn('ClientID', 'text', (c) => c.notNull())
      .addColumn('TopicType', 'integer', (c) => c.notNull())
      .addColumn('TopicID', 'text', (c) => c.notNull())
      .addColumn('StateID', 'integer', (c) => c.notNull())
      .addColumn('Criticality', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('SerialNumber', 'bigint', (c) => c.notNull())
      .addColumn('MessageTime', 'text', (c) => c.notNull())
      .addColumn('NetBIOSName', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('IDType', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('UserName', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('UserSID', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('UserFlags', 'integer', (c) => c.notNull().defaultTo(0))
      /** The UserParameters' Param values as a JSON list of strings. */
      .addColumn('UserParams', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('ReceivedTime', 'text', (c) => c.notNull());
    t = table === 'StateMsg' ? t.addPrimaryKeyConstraint('StateMsg_pk', ['ClientID', 'TopicType', 'TopicID']) : t.addPrimaryKeyConstraint('StateMsgHistory_pk', ['ClientID', 'TopicType', 'TopicID', 'SerialNumber']);
    await t.execute();
  }
  await db.schema.createIndex('StateMsg_Topic').on('StateMsg').columns(['TopicType', 'TopicID']).execute();

  await db.schema
    .createTable('SR_TopicTypes')
    .addColumn('TopicType', 'integer', (c) => c.primaryKey())
    .addColumn('TopicTypeName', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('SR_StateNames')
    .addColumn('TopicType', 'integer', (c) => c.notNull())
    .addColumn('StateID', 'integer', (c) => c.notNull())
    .addColumn('StateName', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('SR_StateNames_pk', ['TopicType', 'StateID'])
    .execute();
  await db.insertInto('SR_TopicTypes').values(TOPIC_TYPES.map(([TopicType, TopicTypeName]) => ({ TopicType, TopicTypeName }))).execute();
  await db.insertInto('SR_StateNames').values(STATE_NAMES.map(([TopicType, StateID, StateName]) => ({ TopicType, StateID, StateName }))).execute();
}
