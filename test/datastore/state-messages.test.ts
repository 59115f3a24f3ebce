/** Migration 0003 and the state-message SQL on both engines: friendly names, history, and the latest-state rule. */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineTest } from '../helpers/engines.ts';
import { migrateToLatest } from '../../src/datastore/migrate.ts';
import { countStateRows, listLatestStates, listStateNames, stateHistory, storeStateRecords } from '../../src/datastore/state-messages.ts';
import { STATE_TOPIC_TYPES } from '../../src/shared/state-report.ts';
import type { StateRecord } from '../../src/shared/state-report.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';

const UPDATE = '505fda07-b4f3-45fb-83d9-8642554e2773';

function rec(serialNumber: number, stateId: number, messageTime: string, over: Partial<StateRecord> = {}): StateRecord {
  return {
    clientId: 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381',
    netbiosName: 'PS1WIN7X64',
    messageTime,
    serialNumber,
    topicType: 500,
    topicId: UPDATE,
    idType: 3,
    user: '',
    userSid: '',
    stateId,
    criticality: 0,
    userFlags: 0,
    userParams: ['200'],
    ...over,
  };
}

async function store(d: SiteDatabase, records: StateRecord[]) {
  return d.db.transaction().execute((trx) => storeStateRecords(trx, records, new Date().toISOString()));
}

async function latest(d: SiteDatabase) {
  return (await listLatestStates(d.db)).map((r) => [r.TopicID, r.SerialNumber, r.StateID]);
}

describe('state messages in the site database', () => {
  engineTest('migration 0003 seeds a friendly name for every known topic type and the states of REFERENCE.md', async (d) => {
    await migrateToLatest(d.db, d.engine);
    const names = await listStateNames(d.db);
    assert.deepEqual([...new Set(names.map((n) => n.TopicType))], [...STATE_TOPIC_TYPES]);
    const find = (t: number, s: number) => names.find((n) => n.TopicType === t && n.StateID === s)?.StateName;
    assert.equal(find(500, 0), 'Unknown');
    assert.equal(find(500, 2), 'Required');
    assert.equal(find(500, 3), 'Installed');
    assert.equal(find(902, 1), 'Success');
    assert.equal(find(301, 12), 'Waiting for superseding update');
    assert.equal(names.find((n) => n.TopicType === 900)?.StateID, null, 'branch DP has a topic name and no states');
  });

  engineTest('an older serial number or an older message time never overwrites the stored state', async (d) => {
    await migrateToLatest(d.db, d.engine);
    assert.deepEqual(await store(d, [rec(10, 2, '2014-01-20T17:18:55.573Z')]), { applied: 1, duplicates: 0 });
    // Out of order: serial 9 arrives after 10.
    assert.deepEqual(await store(d, [rec(9, 1, '2014-01-20T17:10:00.000Z')]), { applied: 0, duplicates: 0 });
    // A higher serial with an older time (client clock set back) does not win either.
    assert.deepEqual(await store(d, [rec(11, 0, '2014-01-20T17:00:00.000Z')]), { applied: 0, duplicates: 0 });
    assert.deepEqual(await latest(d), [[UPDATE, 10, 2]]);
    // Higher serial, same time: wins.
    assert.deepEqual(await store(d, [rec(12, 3, '2014-01-20T17:18:55.573Z')]), { applied: 1, duplicates: 0 });
    assert.deepEqual(await latest(d), [[UPDATE, 12, 3]]);
    // Every valid message is in the history once.
    assert.deepEqual((await stateHistory(d.db, rec(0, 0, '').clientId, 500, UPDATE)).map((h) => [h.SerialNumber, h.StateID]), [[9, 1], [10, 2], [11, 0], [12, 3]]);
  });

  engineTest('storing the same records again changes nothing (a re-read file or a replayed message)', async (d) => {
    await migrateToLatest(d.db, d.engine);
    const batch = [rec(1, 2, '2014-01-20T10:00:00.000Z'), rec(1, 2, '2014-01-20T10:00:00.000Z', { topicId: 'other' })];
    assert.deepEqual(await store(d, batch), { applied: 2, duplicates: 0 });
    assert.deepEqual(await store(d, batch), { applied: 0, duplicates: 2 });
    assert.equal(await countStateRows(d.db, 'StateMsg'), 2);
    assert.equal(await countStateRows(d.db, 'StateMsgHistory'), 2);
  });

  engineTest('several messages for one topic in one batch are applied in order, as if one after the other', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await store(d, [rec(5, 2, '2014-01-20T10:00:00.000Z')]);
    // 9 is rejected (older time), then 6 wins: the order-dependent outcome of applying them one by one.
    const r = await store(d, [rec(9, 1, '2014-01-20T09:00:00.000Z'), rec(6, 3, '2014-01-20T11:00:00.000Z'), rec(7, 1, '2014-01-20T12:00:00.000Z'), rec(4, 0, '2014-01-20T13:00:00.000Z')]);
    assert.deepEqual(r, { applied: 2, duplicates: 0 });
    assert.deepEqual(await latest(d), [[UPDATE, 7, 1]]);
  });

  engineTest('latest states list with friendly names, filtered by client name or ID and topic type', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await store(d, [
      rec(1, 2, '2014-01-20T10:00:00.000Z'),
      rec(2, 1, '2014-01-20T10:00:00.000Z', { topicType: 902, topicId: 'CS100001' }),
      rec(1, 3, '2014-01-20T10:00:00.000Z', { clientId: 'GUID:OTHER', netbiosName: 'OTHERPC' }),
      rec(3, 77, '2014-01-20T10:00:00.000Z', { topicId: 'odd-state' }),
    ]);
    const mine = await listLatestStates(d.db, { client: 'PS1WIN7X64' });
    assert.deepEqual(
      mine.map((r) => [r.TopicType, r.TopicTypeName, r.TopicID, r.StateID, r.StateName]),
      [
        [500, 'Update detection', UPDATE, 2, 'Required'],
        [500, 'Update detection', 'odd-state', 77, null],
        [902, 'Pull distribution point', 'CS100001', 1, 'Success'],
      ],
    );
    assert.deepEqual((await listLatestStates(d.db, { client: 'GUID:OTHER' })).map((r) => r.StateName), ['Installed']);
    assert.deepEqual((await listLatestStates(d.db, { topicType: 902 })).map((r) => r.TopicID), ['CS100001']);
    assert.equal(mine[0]!.UserParams, '["200"]');
  });
});
