/** The agent's local store (real SQLite files) and the `Report` it builds, read back by the MP's own parser. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../src/agent/agent-store.ts';
import { buildStateReport, toWmiDateTime } from '../../src/agent/state-report-xml.ts';
import { parseStateReport } from '../../src/shared/state-report.ts';
import { tempDir, ROOT } from '../helpers/processes.ts';

const A = 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381';
const B = 'GUID:B2006D0E-CF56-41D1-A006-6330EFC39382';

test('serial numbers rise by one per client, independently, and survive a restart', async () => {
  const file = path.join(await tempDir('store'), 'agent.db');
  let store = new AgentStore(file);
  assert.equal(store.addStateMessage(A, { topicType: 500, topicId: 'u1', idType: 3, stateId: 2 }), 1);
  assert.equal(store.addStateMessage(A, { topicType: 500, topicId: 'u2', idType: 3, stateId: 3 }), 2);
  assert.equal(store.addStateMessage(B, { topicType: 500, topicId: 'u1', idType: 3, stateId: 1 }), 1);
  store.close();
  store = new AgentStore(file);
  assert.equal(store.addStateMessage(A, { topicType: 500, topicId: 'u3', idType: 3, stateId: 2 }), 3);
  store.close();
});

test('messages stay unsent until marked, and unsent ones survive a restart', async () => {
  const file = path.join(await tempDir('store'), 'agent.db');
  let store = new AgentStore(file);
  for (let i = 0; i < 5; i += 1) store.addStateMessage(A, { topicType: 500, topicId: `u${i}`, idType: 3, stateId: 2, userParams: [String(i)] });
  const first = store.unsentStateMessages(A, 3);
  assert.deepEqual(first.map((m) => m.serialNumber), [1, 2, 3]);
  store.markStateMessagesSent(A, first.map((m) => m.serialNumber));
  store.close();
  store = new AgentStore(file);
  assert.deepEqual(store.unsentStateMessages(A, 100).map((m) => m.serialNumber), [4, 5]);
  assert.deepEqual(store.stateMessages(A).map((m) => m.sent), [true, true, true, false, false]);
  assert.deepEqual(store.unsentStateMessages(B, 100), []);
  store.close();
});

test('pruning old sent messages never lets a serial number be reused', async () => {
  const file = path.join(await tempDir('store'), 'agent.db');
  const store = new AgentStore(file);
  store.addStateMessage(A, { topicType: 500, topicId: 'u', idType: 3, stateId: 2, time: new Date('2020-01-01T00:00:00Z') });
  store.addStateMessage(A, { topicType: 500, topicId: 'u', idType: 3, stateId: 3, time: new Date('2020-01-02T00:00:00Z') });
  store.markStateMessagesSent(A, [1, 2]);
  assert.equal(store.pruneSentStateMessages(A, new Date('2021-01-01T00:00:00Z')), 2);
  assert.equal(store.addStateMessage(A, { topicType: 500, topicId: 'u', idType: 3, stateId: 2 }), 3);
  store.close();
});

test('status messages queue per client and leave the store once sent', async () => {
  const store = new AgentStore(path.join(await tempDir('store'), 'agent.db'));
  store.addStatusMessage(A, { id: 10002 });
  store.addStatusMessage(B, { id: 10003 });
  const a = store.unsentStatusMessages(A, 10);
  assert.deepEqual(a.map((m) => m.message.id), [10002]);
  store.markStatusMessagesSent(a.map((m) => m.seq));
  assert.deepEqual(store.unsentStatusMessages(A, 10), []);
  assert.equal(store.unsentStatusMessages(B, 10).length, 1);
  store.close();
});

test('the Report the agent builds is read back by the relay parser with every field', async () => {
  const store = new AgentStore(path.join(await tempDir('store'), 'agent.db'));
  const t = new Date('2026-11-22T07:01:08.265Z');
  store.addStateMessage(A, { topicType: 500, topicId: '505fda07-b4f3-45fb-83d9-8642554e2773', idType: 3, stateId: 2, userParams: ['200'], time: t });
  store.addStateMessage(A, { topicType: 902, topicId: 'CS100001 <&"\'>', idType: 1, stateId: 3, criticality: 1, userFlags: 4, userParams: ['a&b', '<c>'], time: t });
  const xml = buildStateReport({ clientId: A, netbiosName: 'PS1WIN7X64', clientVersion: '0.1.0' }, store.unsentStateMessages(A, 100), t);
  const report = parseStateReport(xml, { now: t.getTime() });
  assert.deepEqual(report.invalid, []);
  assert.deepEqual(report.client, { clientId: A, netbiosName: 'PS1WIN7X64', clientVersion: '0.1.0', priority: 5 });
  assert.equal(report.records.length, 2);
  const [r1, r2] = report.records;
  assert.equal(r1!.messageTime, t.toISOString());
  assert.equal(r1!.serialNumber, 1);
  assert.deepEqual(r1!.userParams, ['200']);
  assert.equal(r2!.topicId, 'CS100001 <&"\'>');
  assert.deepEqual([r2!.stateId, r2!.criticality, r2!.userFlags, r2!.idType], [3, 1, 4, 1]);
  assert.deepEqual(r2!.userParams, ['a&b', '<c>']);
  store.close();
});

test("the Report has the seed's shape: the spec's example, rebuilt from its values, is the same document", () => {
  const spec = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'state-report-spec.xml'), 'utf8');
  const msg = { serialNumber: 232, messageTime: '2014-01-20T17:18:55.573Z', topicType: 500, topicId: '505fda07-b4f3-45fb-83d9-8642554e2773', idType: 3, stateId: 2, criticality: 0, userFlags: 0, userParams: ['200'], sent: false };
  const xml = buildStateReport({ clientId: 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381', netbiosName: 'PS1WIN7X64', clientVersion: '5.00.7958.1000' }, [msg], new Date('2014-01-20T19:46:56.903Z'));
  assert.equal(xml, spec.replace(/>\s+</g, '><').trim());
  assert.equal(toWmiDateTime(new Date('2014-01-20T17:18:55.573Z')), '20140120171855.573000+000');
});
