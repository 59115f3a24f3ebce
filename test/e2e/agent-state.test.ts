/**
 * State messages through the real path, end to end: the agent's store
 * (`agent.db`, serial numbers, `MessageSent`) → a real `cairn agent`
 * reporting cycle → the MP relay of a real `cairn start` → the state system
 * → `cairn admin state list`. With serials delivered out of order (the
 * latest-state rule keeps the higher one), and with unsent messages that
 * survive an agent killed and restarted while the site is down, delivered
 * once it is back. Also: an agent given the wrong site-key fingerprint
 * refuses the site and stops with exit code 1.
 *
 * The messages are raised with the agent's own store API while the agent
 * is stopped (what its components do when they raise one); which of them
 * are still unsent is set in the store to force the delivery order.
 * The seed's `Report` XML as it is: test/e2e/state-messages.test.ts.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterTests, cli, freePort, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { SiteProc } from '../helpers/processes.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';
import { AgentStore } from '../../src/agent/agent-store.ts';
import type { StateView } from '../../src/site/services/state-messages.ts';

const { cleanups, track } = afterTests();
const UPDATE_1 = '505fda07-b4f3-45fb-83d9-8642554e2773';
const UPDATE_2 = '11111111-2222-3333-4444-555555555555';
const UPDATE_3 = '99999999-8888-7777-6666-555555555555';

async function states(site: SiteProc, client: string): Promise<StateView[]> {
  const r = await cli(site, ['state', 'list', '--client', client, '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as StateView[]) : [];
}

/** Works on the agent's store while the agent is stopped. */
function withStore<T>(data: string, f: (store: AgentStore, db: Database.Database) => T): T {
  const store = new AgentStore(path.join(data, 'agent.db'));
  const db = new Database(path.join(data, 'agent.db'));
  try {
    return f(store, db);
  } finally {
    db.close();
    store.close();
  }
}

function unsentSerials(data: string, clientId: string): number[] {
  return withStore(data, (s) => s.unsentStateMessages(clientId, 1000).map((m) => m.serialNumber));
}

describe('agent state messages end to end', () => {
  let work: string;
  let site: SiteProc;
  let port: number;
  let siteDir: string;

  before(async () => {
    work = await tempDir('agent-state');
    if (!process.env['CAIRN_KEEP_TEST_DATA']) cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    port = await freePort();
    siteDir = path.join(work, 'site');
    site = track(await startSite(siteDir, ['--no-local-dp', '--port', String(port)]));
  });

  test('[UC18][UC19][UC20][UC21][UC23][UC24][UC25] the agent\'s stored messages reach the state system; an older serial delivered after a newer one never wins; unsent messages survive a restart while the site is down', async () => {
    const data = path.join(work, 'agent');
    let agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'STATE-A']));
    await waitFor(`the agent to be approved\n${agent.output()}`, async () => /is approved by the site/.test(await readLog(data, 'ClientIDManagerStartup')));
    const clientId = (JSON.parse(await fsp.readFile(path.join(data, 'client.json'), 'utf8')) as { clientId: string }).clientId;
    await agent.kill('SIGTERM');

    // UC18: three messages stored with MessageSent = 0; the oldest (update 1, required) is held back so that it travels last.
    const now = Date.now();
    const [s1, s2, s3] = withStore(data, (store, db) => {
      const a = store.addStateMessage(clientId, { topicType: 500, topicId: UPDATE_1, idType: 3, stateId: 2, time: new Date(now - 120_000) });
      const b = store.addStateMessage(clientId, { topicType: 500, topicId: UPDATE_1, idType: 3, stateId: 3, time: new Date(now - 60_000) });
      const c = store.addStateMessage(clientId, { topicType: 500, topicId: UPDATE_2, idType: 3, stateId: 2, time: new Date(now - 60_000) });
      db.prepare('UPDATE StateMessages SET MessageSent = 1 WHERE ClientID = ? AND SerialNumber = ?').run(clientId, a);
      return [a, b, c];
    });
    assert.ok(s1 < s2 && s2 < s3);

    // UC19–UC24: the reporting cycle sends the newer ones; the site stores them as the latest state.
    agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'STATE-A']));
    await waitWithTrigger(data, 'report', `serials ${s2} and ${s3} at the site\n${agent.output()}`, async () => {
      const st = await states(site, 'STATE-A');
      return st.find((x) => x.topicId === UPDATE_1)?.serialNumber === s2 && st.find((x) => x.topicId === UPDATE_2)?.serialNumber === s3;
    });
    assert.match(logText(await readLog(data, 'StateMessage')), new RegExp(`Sent 2 state messages \\(serials ${s2}-${s3}\\) in one report of \\d+ bytes; the MP accepted it \\(202, relayed as \\S+\\.SMX, 2 records, 0 invalid\\)\\. Marked them sent\\.`));
    assert.deepEqual(unsentSerials(data, clientId), []);
    await agent.kill('SIGTERM');

    // The older serial arrives after the newer one: stored in the history, never the latest state.
    withStore(data, (_s, db) => db.prepare('UPDATE StateMessages SET MessageSent = 0 WHERE ClientID = ? AND SerialNumber = ?').run(clientId, s1));
    agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'STATE-A']));
    await waitWithTrigger(data, 'report', `serial ${s1} to be sent\n${agent.output()}`, async () => new RegExp(`Sent 1 state messages \\(serials ${s1}\\)`).test(logText(await readLog(data, 'StateMessage'))));
    await waitFor('the state system to process it', async () => /[1-9]\d* were older than the stored state/.test(await readLog(siteDir, 'statesys')));
    const u1 = (await states(site, 'STATE-A')).find((x) => x.topicId === UPDATE_1)!;
    assert.deepEqual([u1.serialNumber, u1.stateId, u1.stateName], [s2, 3, 'Installed']);
    const siteDb = new Database(path.join(siteDir, 'site.db'), { readonly: true });
    try {
      const hist = siteDb.prepare('SELECT SerialNumber FROM StateMsgHistory WHERE ClientID = ? AND TopicID = ? ORDER BY SerialNumber').all(clientId, UPDATE_1) as { SerialNumber: number }[];
      assert.deepEqual(hist.map((h) => h.SerialNumber), [s1, s2]);
    } finally {
      siteDb.close();
    }

    // The site goes down. The agent cannot deliver a new message; it is killed and restarted while the site is still down.
    await site.kill('SIGTERM');
    await agent.kill('SIGTERM');
    const s4 = withStore(data, (store) => store.addStateMessage(clientId, { topicType: 500, topicId: UPDATE_3, idType: 3, stateId: 2 }));
    agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'STATE-A']));
    await waitWithTrigger(data, 'report', `the report to fail while the site is down\n${agent.output()}`, async () =>
      new RegExp(`Could not send 1 state messages \\(serials ${s4}\\): .*They stay unsent \\(MessageSent = 0\\) for the next reporting cycle\\.`).test(logText(await readLog(data, 'StateMessage'))),
    );
    await agent.kill('SIGKILL');
    assert.deepEqual(unsentSerials(data, clientId), [s4]);
    agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'STATE-A']));
    await waitFor(`the restarted agent to use its pinned key\n${agent.output()}`, async () => (logText(await readLog(data, 'ClientIDManagerStartup')).match(/Using the pinned site signing key/g) ?? []).length >= 4);

    // The site is back on the same address: the message is delivered and marked sent.
    site = track(await startSite(siteDir, ['--no-local-dp', '--port', String(port)]));
    await waitWithTrigger(data, 'report', `serial ${s4} at the site\n${agent.output()}`, async () => (await states(site, 'STATE-A')).find((x) => x.topicId === UPDATE_3)?.serialNumber === s4);
    await waitFor('the message marked sent', async () => unsentSerials(data, clientId).length === 0);
    assert.match(logText(await readLog(data, 'StateMessage')), new RegExp(`Sent 1 state messages \\(serials ${s4}\\) in one report`));
    await agent.kill('SIGTERM');
    assert.equal(agent.child.exitCode, 0, agent.output());
  });

  test('an agent given another --site-key-fingerprint than the site\'s refuses the site and exits 1 (CAIRN_SITE_KEY_UNTRUSTED)', async () => {
    const data = path.join(work, 'agent-wrong-key');
    const wrong = 'ab'.repeat(32);
    const agent = track(startAgentProc(['--mp', site.url, '--data', data, '--name', 'WRONG-KEY', '--site-key-fingerprint', wrong]));
    assert.equal(await agent.exited, 1, agent.output());
    assert.match(agent.output(), /cairn: CAIRN_SITE_KEY_UNTRUSTED: .*expected AB(AB)+, the MP offers [0-9A-F]{64}/);
    const log = logText(await readLog(data, 'ClientIDManagerStartup'));
    assert.match(log, new RegExp(`The MP offers site key [0-9A-F]{64}, not ${wrong.toUpperCase()} given with --site-key-fingerprint: refusing it \\(CAIRN_SITE_KEY_UNTRUSTED\\)\\.`));
    assert.match(log, /The agent stops: CAIRN_SITE_KEY_UNTRUSTED/);
    assert.ok(!fs.existsSync(path.join(data, 'site-key.pem')), 'no key was pinned');
    const clients = JSON.parse((await cli(site, ['client', 'list', '--json'])).stdout) as { name: string }[];
    assert.ok(!clients.some((c) => c.name === 'WRONG-KEY'), 'it never registered');
  });
});
