/**
 * `cairn agent` as a real process, before any MP answers: it makes and keeps
 * its identity, waits for the MP without crashing or spinning, stops on
 * SIGTERM, and refuses a bad facts file with a clear code. (The flows with a
 * real MP are in the MP's end-to-end tests once both branches meet.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { freePort, readLog, runCairn, tempDir, waitFor } from '../helpers/processes.ts';
import { startAgentProc as startAgent } from '../helpers/agent.ts';

/** An agent process whose `stop` sends SIGTERM and resolves with its exit code. */
function startAgentProc(args: string[]): { output: () => string; stop: () => Promise<number | null> } {
  const agent = startAgent(args);
  return { output: agent.output, stop: () => agent.kill().then(() => agent.exited) };
}

test('the agent makes its identity once, waits for an MP that is down, and stops cleanly on SIGTERM', async () => {
  const data = await tempDir('agent');
  const mp = `http://127.0.0.1:${await freePort()}`;
  const a = startAgentProc(['--mp', mp, '--data', data]);
  await waitFor(`the agent to try the MP\n${a.output()}`, async () => /Cannot fetch the site signing key yet \(CAIRN_AGENT_MP_UNREACHABLE/.test(await readLog(data, 'ClientIDManagerStartup')));
  assert.equal(await a.stop(), 0);
  const id = JSON.parse(await fsp.readFile(path.join(data, 'client.json'), 'utf8')) as { clientId: string };
  assert.match(id.clientId, /^GUID:[0-9A-F-]{36}$/);
  assert.equal(fs.statSync(path.join(data, 'client.key')).mode & 0o777, 0o600);
  assert.match(await readLog(data, 'CcmMessaging'), /GET \/mp\/v1\/site-key: no reply after/);

  const b = startAgentProc(['--mp', mp, '--data', data]);
  await waitFor(`the agent to start again\n${b.output()}`, async () => new RegExp(`Client ID is ${id.clientId.replace(/[-:]/g, '.')}`).test(await readLog(data, 'ClientIDManagerStartup')));
  assert.equal(await b.stop(), 0);
  assert.equal((JSON.parse(await fsp.readFile(path.join(data, 'client.json'), 'utf8')) as { clientId: string }).clientId, id.clientId);
});

test('simulated clients get their own identities from the facts file, kept across restarts', async () => {
  const data = await tempDir('agent-sim');
  const facts = path.join(data, 'facts.json');
  await fsp.writeFile(facts, JSON.stringify({ clients: [{ name: 'SIM-{n:3}', count: 2, ipAddresses: ['{ipv4:10.1.0.1}'] }, { name: 'BR-{n}', ipAddresses: ['192.168.9.{n}'] }] }));
  const mp = `http://127.0.0.1:${await freePort()}`;
  const read = (): { Idx: number; ClientID: string; Name: string }[] => {
    const db = new Database(path.join(data, 'agent.db'), { readonly: true });
    try {
      return db.prepare('SELECT Idx, ClientID, Name FROM SimulatedClients ORDER BY Idx').all() as { Idx: number; ClientID: string; Name: string }[];
    } finally {
      db.close();
    }
  };
  const a = startAgentProc(['--mp', mp, '--data', data, '--simulate', '3', '--facts', facts]);
  await waitFor(`the simulation to start\n${a.output()}`, async () => /Created 3 simulated client identities/.test(await readLog(data, 'ClientIDManagerStartup')));
  assert.equal(await a.stop(), 0);
  const first = read();
  assert.deepEqual(first.map((r) => r.Name), ['SIM-001', 'SIM-002', 'BR-1']);
  assert.equal(new Set(first.map((r) => r.ClientID)).size, 3);

  const b = startAgentProc(['--mp', mp, '--data', data, '--simulate', '3', '--facts', facts]);
  await waitFor(`the simulation to start again\n${b.output()}`, async () => (await readLog(data, 'ClientIDManagerStartup')).split('Starting 3 simulated clients').length === 3);
  assert.equal(await b.stop(), 0);
  assert.deepEqual(read(), first);
});

test('a bad facts file stops the command with CAIRN_AGENT_FACTS_INVALID', async () => {
  const data = await tempDir('agent-facts');
  const facts = path.join(data, 'facts.json');
  await fsp.writeFile(facts, JSON.stringify({ clients: [{ name: 'SAME', count: 2 }] }));
  const r = await runCairn(['agent', '--mp', 'http://127.0.0.1:9', '--data', data, '--simulate', '2', '--facts', facts]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cairn: CAIRN_AGENT_FACTS_INVALID: .*SAME is made twice/);
});
