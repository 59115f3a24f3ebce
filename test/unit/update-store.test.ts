/**
 * The update store (spec 30 §3 step 5; docs/adr/0010-scan-agent.md) on a real
 * agent store: a topic 500 message only for a new or changed state (or
 * revision), none for a rescan that finds nothing new, required updates that
 * a scan no longer returns become not required with the reason, and
 * thousands of states go in one transaction with consecutive serials.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AgentStore } from '../../src/agent/agent-store.ts';
import { MpClient, MpTransport } from '../../src/agent/mp-client.ts';
import { StateMessaging } from '../../src/agent/state-messages.ts';
import { UpdateStore } from '../../src/agent/update-store.ts';
import { newKeyPair } from '../../src/shared/client-auth.ts';
import { createComponentLog } from '../../src/shared/cmtrace-log.ts';
import type { ScanResult, UpdateScanResult, UpdateStateName } from '../../src/agent/scan/types.ts';
import { tempDir } from '../helpers/processes.ts';

const CLIENT = 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381';
const u = (n: number, state: UpdateStateName, revision = 1, reason?: string): UpdateScanResult => ({
  id: `e0000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  revision,
  title: `update ${n}`,
  articleId: `A-${n}`,
  products: ['d0000000-0000-4000-8000-000000000000'],
  classification: 'c',
  state,
  ...(reason ? { reason } : {}),
});
const result = (updates: UpdateScanResult[], pruned: { id: string; supersededBy: string }[] = []): ScanResult => ({ contentVersion: 1, updatePoint: 'http://sup', updates, pruned, categories: 1, evaluated: updates.length, total: updates.length });

async function setUp() {
  const dir = await tempDir('update-store');
  const store = new AgentStore(path.join(dir, 'agent.db'));
  const log = (name: string) => createComponentLog({ dir: path.join(dir, 'logs'), name, component: name });
  // Never asked to send: the update store only stores and logs.
  const mp = new MpClient(new MpTransport('http://127.0.0.1:9'), { clientId: CLIENT, privateKeyPem: newKeyPair().privateKey }, log('CcmMessaging'));
  const state = new StateMessaging({ store, mp, log: log('StateMessage'), sender: { clientId: CLIENT, netbiosName: 'PC1', clientVersion: '1' } });
  return { store, updates: new UpdateStore({ clientId: CLIENT, store, state, log: log('UpdatesStore') }) };
}

test('[UC17][UC18] a state message only for a new or changed state or revision; a rescan with nothing new raises none', async () => {
  const { store, updates } = await setUp();
  assert.deepEqual(updates.record(result([u(1, 'required'), u(2, 'installed'), u(3, 'unknown', 1, 'the rules contradict each other')])), { created: 3, changed: 0, unchanged: 0, dropped: 0, raised: 3 });
  assert.deepEqual(store.unsentStateMessages(CLIENT, 100).map((m) => [m.topicType, m.topicId.slice(-1), m.stateId, m.userParams[0], m.sent]), [[500, '1', 2, '1', false], [500, '2', 3, '1', false], [500, '3', 0, '1', false]]);
  assert.equal(updates.record(result([u(1, 'required'), u(2, 'installed'), u(3, 'unknown', 1, 'the rules contradict each other')])).raised, 0);
  // 1 installed now, 2 a new revision with the same state: both reported; 3 unchanged.
  assert.deepEqual(updates.record(result([u(1, 'installed'), u(2, 'installed', 2), u(3, 'unknown', 1, 'the rules contradict each other')])), { created: 0, changed: 2, unchanged: 1, dropped: 0, raised: 2 });
  assert.deepEqual(store.stateMessages(CLIENT).map((m) => m.serialNumber), [1, 2, 3, 4, 5]);
  assert.deepEqual(updates.statuses().map((s) => [s.updateId.slice(-1), s.status, s.revision, s.reason]), [['1', 3, 1, ''], ['2', 3, 2, ''], ['3', 0, 1, 'the rules contradict each other']]);
  store.close();
});

test('a required update the scan no longer returns becomes not required with the reason; installed ones stay', async () => {
  const { store, updates } = await setUp();
  updates.record(result([u(1, 'required'), u(2, 'installed'), u(3, 'notRequired')]));
  const r = updates.record(result([u(4, 'required')], [{ id: u(1, 'required').id, supersededBy: u(4, 'required').id }]));
  assert.deepEqual(r, { created: 1, changed: 0, unchanged: 0, dropped: 1, raised: 2 });
  const byId = new Map(updates.statuses().map((s) => [s.updateId.slice(-1), s]));
  assert.deepEqual([byId.get('1')!.status, byId.get('1')!.reason], [1, `superseded by ${u(4, 'required').id}`]);
  assert.equal(byId.get('2')!.status, 3);
  assert.equal(byId.get('3')!.status, 1);
  assert.equal(updates.record(result([u(4, 'required')])).raised, 0, 'reported once');
  store.close();
});

test('5,000 states in one scan: one transaction, consecutive serials after the ones before', async () => {
  const { store, updates } = await setUp();
  store.addStateMessage(CLIENT, { topicType: 501, topicId: '{S}', idType: 3, stateId: 2 });
  const many = Array.from({ length: 5000 }, (_, i) => u(i + 1, i % 2 ? 'required' : 'notRequired'));
  assert.equal(updates.record(result(many)).raised, 5000);
  const serials = store.stateMessages(CLIENT).map((m) => m.serialNumber);
  assert.equal(serials.length, 5001);
  assert.deepEqual([serials[0], serials[1], serials.at(-1)], [1, 2, 5001]);
  assert.equal(store.addStateMessage(CLIENT, { topicType: 501, topicId: '{S}', idType: 3, stateId: 3 }), 5002);
  store.close();
});

test('[UC19] a reporting cycle asked for while one is sending joins it: every serial reaches the MP once', async () => {
  const dir = await tempDir('state-single-flight');
  const store = new AgentStore(path.join(dir, 'agent.db'));
  const log = (name: string) => createComponentLog({ dir: path.join(dir, 'logs'), name, component: name });
  // A stand-in relay endpoint that records the serials of each report and holds the first reply until a second cycle has been asked for.
  const received: number[] = [];
  let releaseFirst!: () => void;
  const firstHeld = new Promise<void>((r) => (releaseFirst = r));
  let requests = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      for (const m of body.matchAll(/SerialNumber="(\d+)"/g)) received.push(Number(m[1]));
      const reply = () => res.writeHead(202, { 'content-type': 'application/json' }).end('{"file":"x.SMX","records":1,"invalidRecords":0}');
      if (requests++ === 0) void firstHeld.then(reply);
      else reply();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const mp = new MpClient(new MpTransport(`http://127.0.0.1:${port}`), { clientId: CLIENT, privateKeyPem: newKeyPair().privateKey }, log('CcmMessaging'));
  const state = new StateMessaging({ store, mp, log: log('StateMessage'), sender: { clientId: CLIENT, netbiosName: 'PC1', clientVersion: '1' } });
  for (let i = 0; i < 2500; i++) store.addStateMessage(CLIENT, { topicType: 500, topicId: `t${i}`, idType: 3, stateId: 1 });
  const first = state.sendStateMessages();
  const second = state.sendStateMessages();
  releaseFirst();
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a, 2500);
  assert.equal(b, 2500, 'the second call joined the first');
  assert.equal(received.length, 2500);
  assert.equal(new Set(received).size, 2500, 'no serial sent twice');
  assert.equal(store.unsentStateMessages(CLIENT, 1).length, 0);
  assert.equal(await state.sendStateMessages(), 0, 'a later cycle finds nothing unsent');
  store.close();
});
